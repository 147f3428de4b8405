/*
 * The hot path of otel_correlate._otlp_encode, in C: one OTLP Span or LogRecord
 * message per queued item, for the shapes a service sends all the time.
 *
 * The Python encoder stays the definition of the output. Every function here
 * either writes exactly the bytes the Python encoder writes for an item, or
 * declines the item and lets the Python encoder do it: anything unusual (events,
 * links, a trace state, attribute values that are not exact str/int/float/bool,
 * numbers out of range, strings that are not valid UTF-8, subclasses of the SDK's
 * types) goes to the Python function passed in as `fallback`. Declining is always
 * safe; guessing is never done. tests/test_otlp_native.py compares the two
 * encoders byte for byte.
 *
 * Two checks run on every item as well, in the same spirit: plain() is the
 * attribute check of _fastsdk._plain_kinds (request thread), settled() the walk of
 * _sensitive.Scrubber.attributes for attributes in which nothing is masked (export
 * threads). Each answers exactly as its Python code; where in doubt, settled() says
 * "not settled" and the Python code decides. tests/test_native_checks.py compares them.
 *
 * Nothing here keeps a reference to an item after the call returns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* What configure() was given: the SDK types whose fields are read directly. */
static PyObject *ReadableSpanType = NULL;
static PyObject *SpanContextType = NULL;
static PyObject *StatusType = NULL;
static PyObject *QueuedLogType = NULL;

/*
 * Enum members (singletons) and what they encode to, found by identity: an Enum's
 * __hash__ is Python code, a pointer comparison is not.
 */
#define MAX_MEMBERS 64
typedef struct {
    Py_ssize_t count;
    PyObject *keys[MAX_MEMBERS];
    PyObject *values[MAX_MEMBERS];
} IdMap;

static IdMap KindFields;  /* SpanKind -> bytes (the encoded kind field) */
static IdMap StatusCodes; /* StatusCode -> int */
static IdMap Severities;  /* SeverityNumber -> int */

static PyObject *idmap_get(const IdMap *map, PyObject *key) {
    for (Py_ssize_t i = 0; i < map->count; i++)
        if (map->keys[i] == key) return map->values[i];
    return NULL;
}

static int idmap_set(IdMap *map, PyObject *dict) {
    if (PyDict_GET_SIZE(dict) > MAX_MEMBERS) {
        PyErr_SetString(PyExc_ValueError, "configure: too many enum members");
        return -1;
    }
    for (Py_ssize_t i = 0; i < map->count; i++) {
        Py_CLEAR(map->keys[i]);
        Py_CLEAR(map->values[i]);
    }
    map->count = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        map->keys[map->count] = key;
        map->values[map->count] = value;
        map->count++;
    }
    return 0;
}

static PyObject *s_name, *s_context, *s_parent, *s_kind, *s_start_time, *s_end_time,
    *s_attributes, *s_events, *s_links, *s_status, *s_status_code, *s_description;

/* Result of encoding one item: written, declined (use the Python encoder), or a Python error. */
enum { OK = 0, DECLINE = 1, FAIL = -1 };

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    if (more > PY_SSIZE_T_MAX / 2 - b->len) { /* no doubling past half the address space */
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    if (n == 0) return 0;
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static int buf_byte(Buf *b, unsigned char c) { return buf_put(b, &c, 1); }

static int varint_size(uint64_t v) {
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int buf_varint(Buf *b, uint64_t v) {
    unsigned char tmp[10];
    int n = 0;
    while (v >= 0x80) {
        tmp[n++] = (unsigned char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    tmp[n++] = (unsigned char)v;
    return buf_put(b, tmp, n);
}

static int buf_fixed64(Buf *b, uint64_t v) {
    unsigned char tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    return buf_put(b, tmp, 8);
}

static int buf_fixed32(Buf *b, uint32_t v) {
    unsigned char tmp[4];
    for (int i = 0; i < 4; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    return buf_put(b, tmp, 4);
}

/* tag, length, UTF-8 bytes */
static int buf_string(Buf *b, unsigned char tag, const char *s, Py_ssize_t n) {
    if (buf_byte(b, tag) < 0 || buf_varint(b, (uint64_t)n) < 0) return -1;
    return buf_put(b, s, n);
}

/* The UTF-8 of an exact str, or DECLINE (not a str, or not encodable: the Python encoder raises then). */
static int utf8_of(PyObject *obj, const char **s, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(obj)) return DECLINE;
    *s = PyUnicode_AsUTF8AndSize(obj, n);
    if (*s == NULL) {
        PyErr_Clear();
        return DECLINE;
    }
    return OK;
}

/* A non-negative int as an unsigned 64-bit number; DECLINE when it is not an exact-range int. */
static int u64_of(PyObject *obj, uint64_t *out) {
    if (!PyLong_Check(obj)) return DECLINE;
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return DECLINE;
    }
    *out = (uint64_t)v;
    return OK;
}

/* `len` big-endian bytes of a non-negative int (trace and span ids); DECLINE when it does not fit. */
static int ids_of(PyObject *obj, unsigned char *out, size_t len) {
    if (!PyLong_Check(obj)) return DECLINE;
#if PY_VERSION_HEX >= 0x030D0000
    int r = _PyLong_AsByteArray((PyLongObject *)obj, out, len, 0, 0, 1);
#else
    int r = _PyLong_AsByteArray((PyLongObject *)obj, out, len, 0, 0);
#endif
    if (r < 0) {
        PyErr_Clear();
        return DECLINE;
    }
    return OK;
}

/*
 * Repeated KeyValue fields under `tag` for a plain dict whose keys are str and whose
 * values are exact str, bool, int (64-bit) or float. Anything else declines the item.
 */
static int put_attributes(Buf *b, unsigned char tag, PyObject *attributes) {
    if (attributes == Py_None) return OK;
    if (!PyDict_CheckExact(attributes)) return DECLINE;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value)) {
        const char *k, *s = NULL;
        Py_ssize_t klen, slen = 0;
        if (utf8_of(key, &k, &klen) != OK) return DECLINE;
        unsigned char head;
        uint64_t number = 0;
        double real = 0.0;
        Py_ssize_t any_len;
        if (PyUnicode_CheckExact(value)) {
            if (utf8_of(value, &s, &slen) != OK) return DECLINE;
            head = 0x0a;
            any_len = 1 + varint_size((uint64_t)slen) + slen;
        } else if (PyBool_Check(value)) {
            head = 0x10;
            number = value == Py_True;
            any_len = 2;
        } else if (PyLong_CheckExact(value)) {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow || (v == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return DECLINE;
            }
            head = 0x18;
            number = (uint64_t)v; /* two's complement: the Python encoder adds 2**64 to negatives */
            any_len = 1 + varint_size(number);
        } else if (PyFloat_CheckExact(value)) {
            head = 0x21;
            real = PyFloat_AS_DOUBLE(value);
            any_len = 9;
        } else {
            return DECLINE;
        }
        Py_ssize_t kv_len = 1 + varint_size((uint64_t)klen) + klen + 1 + varint_size((uint64_t)any_len) + any_len;
        if (buf_byte(b, tag) < 0 || buf_varint(b, (uint64_t)kv_len) < 0) return FAIL;
        if (buf_string(b, 0x0a, k, klen) < 0) return FAIL;
        if (buf_byte(b, 0x12) < 0 || buf_varint(b, (uint64_t)any_len) < 0) return FAIL;
        if (head == 0x0a) {
            if (buf_string(b, 0x0a, s, slen) < 0) return FAIL;
        } else if (head == 0x21) {
            uint64_t bits;
            memcpy(&bits, &real, 8);
            if (buf_byte(b, 0x21) < 0 || buf_fixed64(b, bits) < 0) return FAIL;
        } else {
            if (buf_byte(b, head) < 0 || buf_varint(b, number) < 0) return FAIL;
        }
    }
    return OK;
}

/* Reads `name` from obj into *out (a new reference); DECLINE when it is missing. */
static int get(PyObject *obj, PyObject *name, PyObject **out) {
    *out = PyObject_GetAttr(obj, name);
    if (*out == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return FAIL;
        PyErr_Clear();
        return DECLINE;
    }
    return OK;
}

/* A time field (fixed64), written when the value is truthy, as the Python encoder does. */
static int put_time(Buf *b, unsigned char tag, PyObject *value) {
    if (value == Py_None) return OK;
    uint64_t t;
    if (!PyLong_CheckExact(value) || u64_of(value, &t) != OK) return DECLINE;
    if (t == 0) return OK;
    if (buf_byte(b, tag) < 0 || buf_fixed64(b, t) < 0) return FAIL;
    return OK;
}

static int put_span_fields(Buf *b, PyObject **fields) {
    /* fields: name, context, parent, kind, start, end, attributes, events, links, status */
    PyObject *ctx = fields[1], *parent = fields[2];
    unsigned char ids[16];
    int r;
    if ((PyObject *)Py_TYPE(ctx) != SpanContextType || PyTuple_GET_SIZE(ctx) < 5) return DECLINE;
    r = PyObject_IsTrue(PyTuple_GET_ITEM(ctx, 4)); /* the trace state */
    if (r != 0) return r < 0 ? FAIL : DECLINE;
    if ((r = ids_of(PyTuple_GET_ITEM(ctx, 0), ids, 16)) != OK) return r;
    if (buf_put(b, "\x0a\x10", 2) < 0 || buf_put(b, ids, 16) < 0) return FAIL;
    if ((r = ids_of(PyTuple_GET_ITEM(ctx, 1), ids, 8)) != OK) return r;
    if (buf_put(b, "\x12\x08", 2) < 0 || buf_put(b, ids, 8) < 0) return FAIL;
    int remote_parent = 0;
    if (parent != Py_None) {
        if ((PyObject *)Py_TYPE(parent) != SpanContextType || PyTuple_GET_SIZE(parent) < 5) return DECLINE;
        if ((r = ids_of(PyTuple_GET_ITEM(parent, 1), ids, 8)) != OK) return r;
        if (buf_put(b, "\x22\x08", 2) < 0 || buf_put(b, ids, 8) < 0) return FAIL;
        remote_parent = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 2));
        if (remote_parent < 0) return FAIL;
    }
    const char *s;
    Py_ssize_t n;
    if ((r = utf8_of(fields[0], &s, &n)) != OK) return r;
    if (n && buf_string(b, 0x2a, s, n) < 0) return FAIL;
    PyObject *kind = idmap_get(&KindFields, fields[3]);
    if (kind == NULL) return DECLINE;
    if (buf_put(b, PyBytes_AS_STRING(kind), PyBytes_GET_SIZE(kind)) < 0) return FAIL;
    if ((r = put_time(b, 0x39, fields[4])) != OK) return r;
    if ((r = put_time(b, 0x41, fields[5])) != OK) return r;
    if ((r = put_attributes(b, 0x4a, fields[6])) != OK) return r;
    for (int i = 7; i <= 8; i++) { /* events, links: the Python encoder writes them */
        r = PyObject_IsTrue(fields[i]);
        if (r != 0) return r < 0 ? FAIL : DECLINE;
    }
    PyObject *status = fields[9];
    if (status != Py_None) {
        if ((PyObject *)Py_TYPE(status) != StatusType) return DECLINE;
        PyObject *code_obj, *description;
        if ((r = get(status, s_status_code, &code_obj)) != OK) return r;
        PyObject *code = idmap_get(&StatusCodes, code_obj);
        Py_DECREF(code_obj);
        if (code == NULL) return DECLINE;
        long c = PyLong_AsLong(code);
        if (c < 0 || c > 127) {
            PyErr_Clear();
            return DECLINE;
        }
        if ((r = get(status, s_description, &description)) != OK) return r;
        const char *d = NULL; /* points into `description`, released only after the writes */
        Py_ssize_t dlen = 0;
        if (description != Py_None && (r = utf8_of(description, &d, &dlen)) != OK) {
            Py_DECREF(description);
            return r;
        }
        Py_ssize_t body = (dlen ? 1 + varint_size((uint64_t)dlen) + dlen : 0) + (c ? 2 : 0);
        r = OK;
        if (buf_byte(b, 0x7a) < 0 || buf_varint(b, (uint64_t)body) < 0 ||
            (dlen && buf_string(b, 0x12, d, dlen) < 0) ||
            (c && (buf_byte(b, 0x18) < 0 || buf_byte(b, (unsigned char)c) < 0)))
            r = FAIL;
        Py_DECREF(description);
        if (r != OK) return r;
    }
    if (buf_put(b, "\x85\x01", 2) < 0 || buf_fixed32(b, remote_parent ? 0x300 : 0x100) < 0) return FAIL;
    return OK;
}

static int put_span(Buf *b, PyObject *span) {
    if ((PyObject *)Py_TYPE(span) != ReadableSpanType) return DECLINE;
    PyObject *names[10] = {s_name, s_context, s_parent, s_kind, s_start_time,
                           s_end_time, s_attributes, s_events, s_links, s_status};
    PyObject *fields[10] = {NULL};
    int r = OK;
    for (int i = 0; i < 10 && r == OK; i++) r = get(span, names[i], &fields[i]);
    if (r == OK) r = put_span_fields(b, fields);
    for (int i = 0; i < 10; i++) Py_XDECREF(fields[i]);
    return r;
}

static int put_log(Buf *b, PyObject *item) {
    /* timestamp, observed, trace_id, span_id, flags, severity_text, severity_number, body, attributes, logger */
    if ((PyObject *)Py_TYPE(item) != QueuedLogType || PyTuple_GET_SIZE(item) != 10) return DECLINE;
    PyObject **f = &PyTuple_GET_ITEM(item, 0);
    int r;
    const char *s;
    Py_ssize_t n;
    unsigned char ids[16];
    if ((r = put_time(b, 0x09, f[0])) != OK) return r;
    if (f[6] != Py_None) {
        PyObject *number = idmap_get(&Severities, f[6]);
        if (number == NULL) return DECLINE;
        uint64_t v;
        if (u64_of(number, &v) != OK) return DECLINE;
        if (v && (buf_byte(b, 0x10) < 0 || buf_varint(b, v) < 0)) return FAIL;
    }
    if (f[5] != Py_None) {
        if ((r = utf8_of(f[5], &s, &n)) != OK) return r;
        if (n && buf_string(b, 0x1a, s, n) < 0) return FAIL;
    }
    if ((r = utf8_of(f[7], &s, &n)) != OK) return r; /* the body: other types go to the Python encoder */
    if (buf_byte(b, 0x2a) < 0 || buf_varint(b, (uint64_t)(1 + varint_size((uint64_t)n) + n)) < 0) return FAIL;
    if (buf_string(b, 0x0a, s, n) < 0) return FAIL;
    if ((r = put_attributes(b, 0x32, f[8])) != OK) return r;
    if (f[4] != Py_None) {
        uint64_t flags;
        if (u64_of(f[4], &flags) != OK || flags > 0xFFFFFFFFu) return DECLINE;
        if (flags && (buf_byte(b, 0x45) < 0 || buf_fixed32(b, (uint32_t)flags) < 0)) return FAIL;
    }
    r = PyObject_IsTrue(f[2]);
    if (r < 0) return FAIL;
    if (r) {
        if ((r = ids_of(f[2], ids, 16)) != OK) return r;
        if (buf_put(b, "\x4a\x10", 2) < 0 || buf_put(b, ids, 16) < 0) return FAIL;
    }
    r = PyObject_IsTrue(f[3]);
    if (r < 0) return FAIL;
    if (r) {
        if ((r = ids_of(f[3], ids, 8)) != OK) return r;
        if (buf_put(b, "\x52\x08", 2) < 0 || buf_put(b, ids, 8) < 0) return FAIL;
    }
    return put_time(b, 0x59, f[1]);
}

/* Each item as a length-delimited field `tag`; declined items are encoded by `fallback(item)`. */
static PyObject *items(PyObject *args, int (*put)(Buf *, PyObject *)) {
    PyObject *seq, *fallback;
    unsigned char tag;
    if (!PyArg_ParseTuple(args, "ObO:items", &seq, &tag, &fallback)) return NULL;
    if (tag > 127) {
        PyErr_SetString(PyExc_ValueError, "items: the tag must be a one-byte field key (0-127)");
        return NULL;
    }
    if (ReadableSpanType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "otel_correlate._otlp_native: configure() was not called");
        return NULL;
    }
    /* An owned snapshot: the fallback and the truth tests run Python code, which could
       change a list the caller passed while the loop walks it. */
    PyObject *fast = PySequence_Tuple(seq);
    if (fast == NULL) return NULL;
    Buf out = {NULL, 0, 0}, one = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(fast, i);
        one.len = 0;
        int r = put(&one, item);
        if (r == FAIL) goto done;
        if (r == DECLINE) {
            PyObject *encoded = PyObject_CallOneArg(fallback, item);
            if (encoded == NULL) goto done;
            if (!PyBytes_Check(encoded)) {
                Py_DECREF(encoded);
                PyErr_SetString(PyExc_TypeError, "items: the fallback encoder must return bytes");
                goto done;
            }
            one.len = 0;
            int failed = buf_put(&one, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)) < 0;
            Py_DECREF(encoded);
            if (failed) goto done;
        }
        if (buf_byte(&out, tag) < 0 || buf_varint(&out, (uint64_t)one.len) < 0 || buf_put(&out, one.data, one.len) < 0)
            goto done;
    }
    result = PyBytes_FromStringAndSize(out.data ? out.data : "", out.len);
done:
    PyMem_Free(out.data);
    PyMem_Free(one.data);
    Py_DECREF(fast);
    return result;
}

static PyObject *spans(PyObject *self, PyObject *args) { return items(args, put_span); }
static PyObject *logs(PyObject *self, PyObject *args) { return items(args, put_log); }

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *span_type, *context_type, *status_type, *log_type, *kinds, *codes, *severities;
    if (!PyArg_ParseTuple(args, "OOOOO!O!O!:configure", &span_type, &context_type, &status_type, &log_type,
                          &PyDict_Type, &kinds, &PyDict_Type, &codes, &PyDict_Type, &severities))
        return NULL;
    if (!PyType_Check(span_type) || !PyType_Check(status_type) || !PyType_Check(context_type) ||
        !PyType_Check(log_type) || !PyType_IsSubtype((PyTypeObject *)context_type, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)log_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "configure: types are needed, SpanContext and QueuedLogRecord tuples");
        return NULL;
    }
    PyObject *value;
    Py_ssize_t pos = 0;
    PyObject *key;
    while (PyDict_Next(kinds, &pos, &key, &value)) {
        if (!PyBytes_CheckExact(value)) {
            PyErr_SetString(PyExc_TypeError, "configure: span kinds map to bytes");
            return NULL;
        }
    }
    if (idmap_set(&KindFields, kinds) < 0 || idmap_set(&StatusCodes, codes) < 0 ||
        idmap_set(&Severities, severities) < 0)
        return NULL;
    PyObject **slots[] = {&ReadableSpanType, &SpanContextType, &StatusType, &QueuedLogType};
    PyObject *given[] = {span_type, context_type, status_type, log_type};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(given[i]);
        Py_XSETREF(*slots[i], given[i]);
    }
    Py_RETURN_NONE;
}

/* --- checks the request and export threads run on every item ---------------------------- */

static int plain_value(PyObject *value) {
    PyTypeObject *t = Py_TYPE(value);
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type || t == &PyBool_Type;
}

/*
 * plain(attributes: dict) -> int: 0 unless every key is a non-empty str and every value
 * an exact str, int, float or bool; then 1 when the values are only str and int, 2 when a
 * float or a bool is among them (True, 1 and 1.0 are equal in Python, so such a set
 * cannot key a cache of metric series by its items).
 */
static PyObject *plain(PyObject *self, PyObject *attributes) {
    if (!PyDict_CheckExact(attributes)) {
        PyErr_SetString(PyExc_TypeError, "plain: a dict is needed");
        return NULL;
    }
    long kinds = 1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value)) { /* no Python code runs in this loop */
        if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) == 0 || !plain_value(value))
            return PyLong_FromLong(0);
        if (Py_IS_TYPE(value, &PyFloat_Type) || Py_IS_TYPE(value, &PyBool_Type)) kinds = 2;
    }
    return PyLong_FromLong(kinds);
}

/*
 * settled(items, keys, texts, keep, key_verdict, scan) -> bool: True when the scrubber
 * leaves every entry of the dict `items` as it is, found the way Scrubber.attributes
 * finds it: a key's verdict from the cache `keys` (else key_verdict(key)), `keep` or
 * "" (search the value); a str value's result from the cache `texts` (else
 * scan(value)), None when nothing in it is sensitive; numbers and booleans as they
 * are. False as soon as an entry would change or is not a plain str key with a plain
 * value: the caller's Python code then builds the masked copy.
 */
static PyObject *settled(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "settled(items, keys, texts, keep, key_verdict, scan): three dicts first");
        return NULL;
    }
    PyObject *items = args[0], *keys = args[1], *texts = args[2], *keep = args[3], *key_verdict = args[4],
             *scan = args[5];
    Py_ssize_t size = PyDict_GET_SIZE(items), pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(items, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !plain_value(value)) Py_RETURN_FALSE;
        /* The callbacks run Python code: the entry is held, and a changed dict is refused. */
        Py_INCREF(key);
        Py_INCREF(value);
        int verdict_known = 0, outcome = -1; /* outcome: 1 unchanged, 0 changes, -1 error */
        PyObject *verdict = PyDict_GetItemWithError(keys, key); /* borrowed, used before any callback */
        if (verdict != NULL) {
            Py_INCREF(verdict);
            verdict_known = 1;
        } else if (!PyErr_Occurred()) {
            verdict = PyObject_CallOneArg(key_verdict, key);
            verdict_known = verdict != NULL;
        }
        if (verdict_known) {
            if (verdict == keep) outcome = 1;
            else if (!PyUnicode_Check(verdict) || PyUnicode_GET_LENGTH(verdict) != 0) outcome = 0; /* masked whole */
            else if (!PyUnicode_CheckExact(value)) outcome = 1; /* a number or a boolean */
            else {
                PyObject *hit = PyDict_GetItemWithError(texts, value);
                if (hit != NULL) outcome = hit == Py_None;
                else if (!PyErr_Occurred()) {
                    hit = PyObject_CallOneArg(scan, value);
                    if (hit != NULL) {
                        outcome = hit == Py_None;
                        Py_DECREF(hit);
                    }
                }
            }
            Py_DECREF(verdict);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        if (outcome < 0) return NULL;
        if (outcome == 0) Py_RETURN_FALSE;
        if (PyDict_GET_SIZE(items) != size) {
            PyErr_SetString(PyExc_RuntimeError, "settled: the attributes changed while they were checked");
            return NULL;
        }
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(ReadableSpan, SpanContext, Status, QueuedLogRecord, kinds, status_codes, severities)"},
    {"spans", spans, METH_VARARGS, "spans(items, tag, fallback) -> bytes: each span as field `tag`"},
    {"logs", logs, METH_VARARGS, "logs(items, tag, fallback) -> bytes: each queued log record as field `tag`"},
    {"plain", plain, METH_O, "plain(attributes) -> int: 0 not plain, 1 str/int values only, 2 with a float or a bool"},
    {"settled", (PyCFunction)(void (*)(void))settled, METH_FASTCALL,
     "settled(items, keys, texts, keep, key_verdict, scan) -> bool: nothing in items is masked"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlp_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__otlp_native(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {{&s_name, "_name"},           {&s_context, "_context"},     {&s_parent, "_parent"},
                 {&s_kind, "_kind"},           {&s_start_time, "_start_time"}, {&s_end_time, "_end_time"},
                 {&s_attributes, "_attributes"}, {&s_events, "_events"},     {&s_links, "_links"},
                 {&s_status, "_status"},       {&s_status_code, "_status_code"}, {&s_description, "_description"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) return NULL;
    }
    return PyModule_Create(&module);
}

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
 * record() is the request thread's metric measurement for a series the instrument has
 * seen before (_fastsdk._record): it records exactly as the Python loop does, or
 * answers False before doing anything and the Python function decides.
 * tests/test_fastsdk.py compares the metrics of both with the SDK's.
 *
 * Nothing here keeps a reference to an item after the call returns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <time.h>

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

/*
 * Take an object this module just made for the export queue (an ended-span snapshot, a
 * queued log record, a span's context) off the garbage collector's lists. Such an object
 * waits for up to a batch, long enough to be promoted to the oldest generation, and every
 * few thousand of them there trigger a full collection: about four of those objects' worth
 * of a full collection per request. Reference counting still frees it, as it frees the
 * tuples and dicts the interpreter untracks itself, and whatever it refers to stays
 * tracked. What the collector can no longer do is free a reference cycle through it, so
 * each caller untracks only what no code but ours can put in a cycle: a span context (a
 * tuple of numbers, flags and the trace state), a snapshot that only our own span
 * processors see (a user's processor might keep it, or hang an exception on it), and a
 * log record with a str body (its logger leads back to the queue that holds it, a cycle
 * that ends when the record is exported or, if it never is, when its processor shuts down).
 */
static void untrack(PyObject *obj) {
    if (PyObject_IS_GC(obj) && PyObject_GC_IsTracked(obj)) PyObject_GC_UnTrack(obj);
}

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
static int text_settled(PyObject *value, PyObject *texts, PyObject *scan);

/* settled()'s walk over one dict: 1 unchanged, 0 some entry changes (or is not plain), -1 error. */
static int settled_items(PyObject *items, PyObject *keys, PyObject *texts, PyObject *keep, PyObject *key_verdict,
                         PyObject *scan) {
    Py_ssize_t size = PyDict_GET_SIZE(items), pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(items, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !plain_value(value)) return 0;
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
            else outcome = text_settled(value, texts, scan);
            Py_DECREF(verdict);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        if (outcome <= 0) return outcome;
        if (PyDict_GET_SIZE(items) != size) {
            PyErr_SetString(PyExc_RuntimeError, "settled: the attributes changed while they were checked");
            return -1;
        }
    }
    return 1;
}

static PyObject *settled(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "settled(items, keys, texts, keep, key_verdict, scan): three dicts first");
        return NULL;
    }
    int outcome = settled_items(args[0], args[1], args[2], args[3], args[4], args[5]);
    if (outcome < 0) return NULL;
    return PyBool_FromLong(outcome);
}

/*
 * batch_settled(batch, keys, texts, keep, key_verdict, scan, span_type, queued_type, status_type) -> bool:
 * True when _scrub.span or _scrub.log_record would return every item of the export batch
 * itself, checked as they check: an ended span's (exact ReadableSpan) name as Scrubber.text
 * reads it, no events, no links, no status description, its attributes dict as settled();
 * a queued log record's (exact QueuedLogRecord) str body as Scrubber.text and its attributes
 * dict as settled(). False as soon as an item would change or is of another shape: the
 * Python functions then go through the batch item by item.
 */
/* Scrubber.text(value) is value itself: its cached result, else scan(value), is None. 1, 0, -1. */
static int text_settled(PyObject *value, PyObject *texts, PyObject *scan) {
    PyObject *hit = PyDict_GetItemWithError(texts, value);
    if (hit != NULL) return hit == Py_None;
    if (PyErr_Occurred()) return -1;
    Py_INCREF(value); /* held while scan runs Python code */
    hit = PyObject_CallOneArg(scan, value);
    Py_DECREF(value);
    if (hit == NULL) return -1;
    int unchanged = hit == Py_None;
    Py_DECREF(hit);
    return unchanged;
}

/* An empty tuple or list (the fields a span without events or links has): 1, else 0. */
static int empty_sequence(PyObject *value) {
    return (PyTuple_CheckExact(value) && PyTuple_GET_SIZE(value) == 0) ||
           (PyList_CheckExact(value) && PyList_GET_SIZE(value) == 0);
}

static int span_settled(PyObject *span, PyObject **scrub) {
    PyObject *fields[4] = {NULL}; /* name, events, links, status */
    PyObject *names[4] = {s_name, s_events, s_links, s_status};
    int outcome = 0;
    for (int i = 0; i < 4; i++) {
        int r = get(span, names[i], &fields[i]);
        if (r != OK) {
            outcome = r == FAIL ? -1 : 0;
            goto done;
        }
    }
    if (!empty_sequence(fields[1]) || !empty_sequence(fields[2])) goto done;
    if (fields[3] != Py_None) { /* a status: only one without a description is settled here */
        if ((PyObject *)Py_TYPE(fields[3]) != scrub[5]) goto done;
        PyObject *description = NULL;
        int r = get(fields[3], s_description, &description);
        if (r != OK) {
            outcome = r == FAIL ? -1 : 0;
            goto done;
        }
        int empty = description == Py_None || (PyUnicode_CheckExact(description) && PyUnicode_GET_LENGTH(description) == 0);
        Py_DECREF(description);
        if (!empty) goto done;
    }
    if (!PyUnicode_CheckExact(fields[0])) goto done;
    if (PyUnicode_GET_LENGTH(fields[0]) > 0 && (outcome = text_settled(fields[0], scrub[1], scrub[4])) <= 0) goto done;
    PyObject *attributes = NULL;
    int r = get(span, s_attributes, &attributes);
    if (r != OK) {
        outcome = r == FAIL ? -1 : 0;
        goto done;
    }
    outcome = !PyDict_CheckExact(attributes) ? 0 : settled_items(attributes, scrub[0], scrub[1], scrub[2], scrub[3], scrub[4]);
    Py_DECREF(attributes);
done:
    for (int i = 0; i < 4; i++) Py_XDECREF(fields[i]);
    return outcome;
}

static int log_settled(PyObject *item, PyObject **scrub) {
    if (PyTuple_GET_SIZE(item) != 10) return 0;
    PyObject *body = PyTuple_GET_ITEM(item, 7), *attributes = PyTuple_GET_ITEM(item, 8);
    if (!PyUnicode_CheckExact(body) || !PyDict_CheckExact(attributes)) return 0;
    int outcome = text_settled(body, scrub[1], scrub[4]);
    if (outcome <= 0) return outcome;
    return PyDict_GET_SIZE(attributes) == 0 ? 1 : settled_items(attributes, scrub[0], scrub[1], scrub[2], scrub[3], scrub[4]);
}

static PyObject *batch_settled(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9 || !PyDict_Check(args[1]) || !PyDict_Check(args[2]) || !PyType_Check(args[6]) ||
        !PyType_Check(args[7]) || !PyType_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError,
                        "batch_settled(batch, keys, texts, keep, key_verdict, scan, span_type, queued_type, "
                        "status_type)");
        return NULL;
    }
    /* keys, texts, keep, key_verdict, scan, the status type */
    PyObject *scrub[6] = {args[1], args[2], args[3], args[4], args[5], args[8]};
    PyObject *span_type = args[6], *queued_type = args[7];
    /* An owned snapshot: the scan callback runs Python code, which could change a list the caller passed. */
    PyObject *items = PySequence_Tuple(args[0]);
    if (items == NULL) return NULL;
    int outcome = 1;
    for (Py_ssize_t i = 0; outcome > 0 && i < PyTuple_GET_SIZE(items); i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        PyObject *type = (PyObject *)Py_TYPE(item);
        outcome = type == span_type ? span_settled(item, scrub) : type == queued_type ? log_settled(item, scrub) : 0;
    }
    Py_DECREF(items);
    if (outcome < 0) return NULL;
    return PyBool_FromLong(outcome);
}

/* --- metrics: a measurement of a series the instrument has seen before ------------------ */

/*
 * record() is _fastsdk._record for the case that runs on every request: plain input to
 * a series whose aggregations the instrument remembered. It answers False, before doing
 * anything, whenever the Python function must decide (input the SDK would clean, warn
 * about or refuse; attributes that cannot key the cache; a consumer that is not ours; a
 * series seen for the first time), and then updates the aggregations exactly as the
 * Python loop does: the SDK's sum and explicit-bucket histogram steps under their locks,
 * the fast reservoirs' offers under theirs, and the Python code (`other`, a reservoir's
 * or a bucket's own offer) for any other kind. tests/test_fastsdk.py compares the
 * metrics of both paths with the SDK's.
 */
static PyObject *M_consumer_type, *M_sum_type, *M_hist_type, *M_aligned_type, *M_simple_type, *M_bucket_type,
    *M_trace_filter_type, *M_span_types, *M_span_key, *M_invalid_span, *M_get_current, *M_namespace,
    *M_real_time_ns, *M_no_attributes, *M_span_context_type, *M_trace_flags_type, *M_proxy_config_type,
    *M_context_type, *M_zero;
/* Names looked up in _fastsdk's namespace at each use, as its Python code looks them up (a test's
   patched clock or random draw reaches both paths alike). */
static PyObject *s_n_time_ns, *s_n_random, *s_n_span_in, *s_n_other;
static PyObject *s_lock, *s_value, *s_sum, *s_min, *s_max, *s_boundaries, *s_record_min_max, *s_reservoir,
    *s_storage, *s_seen, *s_size, *s_b_value, *s_b_time, *s_b_attributes, *s_b_span_id, *s_b_trace_id,
    *s_b_offered, *s_routes, *s_consumer, *s_is_enabled, *s_sdk_config, *s_exemplar_filter, *s_should_sample,
    *s_get_span_context, *s_trace_flags, *s_sampled, *s_span_id, *s_trace_id, *s_acquire, *s_release,
    *s_empty_counts, *s_offer, *s_context_field, *s_meter_config, *s_config_field, *s_is_enabled_field;

static int lock_enter(PyObject *owner, PyObject **lock) {
    *lock = PyObject_GetAttr(owner, s_lock);
    if (*lock == NULL) return -1;
    PyObject *done = PyObject_CallMethodNoArgs(*lock, s_acquire);
    if (done == NULL) {
        Py_CLEAR(*lock);
        return -1;
    }
    Py_DECREF(done);
    return 0;
}

/* Release the lock taken by lock_enter; after a failure (status < 0) the first error is kept. */
static int lock_exit(PyObject **lock, int status) {
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    if (status < 0) PyErr_Fetch(&type, &value, &tb);
    PyObject *done = PyObject_CallMethodNoArgs(*lock, s_release);
    Py_CLEAR(*lock);
    if (status < 0) {
        if (done == NULL) PyErr_Clear();
        Py_XDECREF(done);
        PyErr_Restore(type, value, tb);
        return -1;
    }
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
}

/* bisect.bisect_left(sequence, x): the first index whose item is not < x. */
static Py_ssize_t bisect_left(PyObject *sequence, PyObject *x) {
    Py_ssize_t lo = 0, hi = PySequence_Size(sequence);
    if (hi < 0) return -1;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        PyObject *item = PySequence_GetItem(sequence, mid);
        if (item == NULL) return -1;
        int less = PyObject_RichCompareBool(item, x, Py_LT);
        Py_DECREF(item);
        if (less < 0) return -1;
        if (less)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int set_new(PyObject *owner, PyObject *name, PyObject *value) { /* steals value */
    if (value == NULL) return -1;
    int status = PyObject_SetAttr(owner, name, value);
    Py_DECREF(value);
    return status;
}

/* A module global, looked up at each use as the Python code looks it up (a new reference), or NULL
   with NameError as Python would raise. */
static PyObject *global_of(PyObject *namespace, PyObject *name) {
    PyObject *found = PyDict_GetItemWithError(namespace, name);
    if (found == NULL) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_NameError, "name %R is not defined", name);
        return NULL;
    }
    return Py_NewRef(found);
}

/* A name of _fastsdk's namespace (a new reference). */
static PyObject *from_namespace(PyObject *name) { return global_of(M_namespace, name); }

/* _fastsdk._span_in(ctx): the context's span, without the API's ABC check for the SDK's own span types.
   Read in place only from an exact Context (its get() is dict.get); anything else asks _span_in. */
static PyObject *span_of(PyObject *ctx) {
    if ((PyObject *)Py_TYPE(ctx) == M_context_type) {
        PyObject *span = PyDict_GetItemWithError(ctx, M_span_key);
        if (span == NULL) {
            if (PyErr_Occurred()) return NULL;
            return Py_NewRef(M_invalid_span);
        }
        Py_INCREF(span); /* held while its type is looked up: that may run Python code */
        int known = PySet_Contains(M_span_types, (PyObject *)Py_TYPE(span));
        if (known > 0) return span;
        Py_DECREF(span);
        if (known < 0) return NULL;
    }
    PyObject *span_in = from_namespace(s_n_span_in);
    if (span_in == NULL) return NULL;
    PyObject *span = PyObject_CallOneArg(span_in, ctx);
    Py_DECREF(span_in);
    return span;
}

/* span.get_span_context(): the `_context` field for the SDK's own span types (their method returns it). */
static PyObject *span_context_of(PyObject *span) {
    int known = PySet_Contains(M_span_types, (PyObject *)Py_TYPE(span));
    if (known < 0) return NULL;
    if (known) return PyObject_GetAttr(span, s_context_field);
    return PyObject_CallMethodNoArgs(span, s_get_span_context);
}

/* A SpanContext's field: trace_id 0, span_id 1, trace_flags 3 (its properties read the tuple). */
static PyObject *span_context_field(PyObject *span_context, Py_ssize_t index, PyObject *name) {
    if ((PyObject *)Py_TYPE(span_context) == M_span_context_type && PyTuple_GET_SIZE(span_context) > index)
        return Py_NewRef(PyTuple_GET_ITEM(span_context, index));
    return PyObject_GetAttr(span_context, name);
}

/* _FastMeasurementConsumer.sample: its answer (a new reference), which the caller tests per aggregation
   and hands to any other aggregation's aggregate() as it is, as the Python loop does. */
static PyObject *sampled(PyObject *consumer, PyObject *amount, PyObject *now, PyObject *attributes, PyObject *ctx) {
    PyObject *config = PyObject_GetAttr(consumer, s_sdk_config);
    if (config == NULL) return NULL;
    PyObject *filter = PyObject_GetAttr(config, s_exemplar_filter);
    Py_DECREF(config);
    if (filter == NULL) return NULL;
    PyObject *answer;
    if ((PyObject *)Py_TYPE(filter) == M_trace_filter_type && ctx != Py_None) {
        Py_DECREF(filter);
        PyObject *span = span_of(ctx);
        if (span == NULL) return NULL;
        PyObject *span_context = span_context_of(span);
        Py_DECREF(span);
        if (span_context == NULL) return NULL;
        PyObject *flags = span_context_field(span_context, 3, s_trace_flags);
        Py_DECREF(span_context);
        if (flags == NULL) return NULL;
        if ((PyObject *)Py_TYPE(flags) == M_trace_flags_type) { /* TraceFlags.sampled: bool(flags & SAMPLED) */
            unsigned long bits = PyLong_AsUnsignedLongMask(flags); /* the low bits of any int, as & reads them */
            Py_DECREF(flags);
            if (bits == (unsigned long)-1 && PyErr_Occurred()) return NULL;
            return Py_NewRef((bits & 1) ? Py_True : Py_False);
        }
        answer = PyObject_GetAttr(flags, s_sampled);
        Py_DECREF(flags);
        if (answer == NULL) return NULL;
        int truth = PyObject_IsTrue(answer); /* the Python code returns bool(...) */
        Py_DECREF(answer);
        return truth < 0 ? NULL : Py_NewRef(truth ? Py_True : Py_False);
    }
    PyObject *call[] = {filter, amount, now, attributes, ctx};
    answer = PyObject_VectorcallMethod(s_should_sample, call, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(filter);
    return answer;
}

/* _FastBucket.offer, or the bucket's own offer for any other bucket type. */
static int bucket_offer(PyObject *bucket, PyObject *amount, PyObject *now, PyObject *attributes, PyObject *ctx) {
    if ((PyObject *)Py_TYPE(bucket) != M_bucket_type) {
        PyObject *call[] = {bucket, amount, now, attributes, ctx};
        PyObject *done = PyObject_VectorcallMethod(s_offer, call, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(done);
        return done == NULL ? -1 : 0;
    }
    if (PyObject_SetAttr(bucket, s_b_value, amount) < 0 || PyObject_SetAttr(bucket, s_b_time, now) < 0 ||
        PyObject_SetAttr(bucket, s_b_attributes, attributes) < 0)
        return -1;
    PyObject *span = span_of(ctx);
    if (span == NULL) return -1;
    int real = PyObject_RichCompareBool(span, M_invalid_span, Py_NE);
    if (real < 0) {
        Py_DECREF(span);
        return -1;
    }
    if (real) {
        PyObject *span_context = span_context_of(span);
        Py_DECREF(span);
        if (span_context == NULL) return -1;
        int status = 0;
        if (set_new(bucket, s_b_span_id, span_context_field(span_context, 1, s_span_id)) < 0 ||
            set_new(bucket, s_b_trace_id, span_context_field(span_context, 0, s_trace_id)) < 0)
            status = -1;
        Py_DECREF(span_context);
        if (status < 0) return -1;
    } else {
        Py_DECREF(span);
    }
    return PyObject_SetAttr(bucket, s_b_offered, Py_True);
}

static int offer_at(PyObject *reservoir, Py_ssize_t index, PyObject *amount, PyObject *now, PyObject *attributes,
                    PyObject *ctx) {
    PyObject *storage = PyObject_GetAttr(reservoir, s_storage);
    if (storage == NULL) return -1;
    PyObject *key = PyLong_FromSsize_t(index);
    PyObject *bucket = key == NULL ? NULL : PyObject_GetItem(storage, key); /* a defaultdict: made on first use */
    Py_XDECREF(key);
    Py_DECREF(storage);
    if (bucket == NULL) return -1;
    int status = bucket_offer(bucket, amount, now, attributes, ctx);
    Py_DECREF(bucket);
    return status;
}

/* _FastAlignedReservoir.offer / _FastSimpleReservoir.offer, or the reservoir's own offer. */
static int reservoir_offer(PyObject *aggregation, PyObject *amount, PyObject *now, PyObject *attributes,
                           PyObject *ctx) {
    PyObject *reservoir = PyObject_GetAttr(aggregation, s_reservoir);
    if (reservoir == NULL) return -1;
    PyObject *type = (PyObject *)Py_TYPE(reservoir);
    int status = -1;
    PyObject *lock = NULL;
    if (type == M_aligned_type) {
        if (lock_enter(reservoir, &lock) == 0) {
            PyObject *boundaries = PyObject_GetAttr(reservoir, s_boundaries);
            Py_ssize_t index = boundaries == NULL ? -1 : bisect_left(boundaries, amount);
            Py_XDECREF(boundaries);
            status = index < 0 ? -1 : offer_at(reservoir, index, amount, now, attributes, ctx);
            status = lock_exit(&lock, status);
        }
    } else if (type == M_simple_type) {
        if (lock_enter(reservoir, &lock) == 0) {
            Py_ssize_t seen = -1, size = -1, index = -1;
            PyObject *value = PyObject_GetAttr(reservoir, s_seen);
            if (value != NULL) {
                seen = PyLong_AsSsize_t(value);
                Py_DECREF(value);
            }
            if (seen >= 0 || !PyErr_Occurred()) {
                value = PyObject_GetAttr(reservoir, s_size);
                if (value != NULL) {
                    size = PyLong_AsSsize_t(value);
                    Py_DECREF(value);
                }
            }
            if (!PyErr_Occurred() && set_new(reservoir, s_seen, PyLong_FromSsize_t(seen + 1)) == 0) {
                /* the first `size` measurements fill the buckets; then each is kept with probability size/seen */
                if (seen < size) {
                    index = seen;
                } else {
                    PyObject *random = from_namespace(s_n_random);
                    PyObject *draw = random == NULL ? NULL : PyObject_CallNoArgs(random);
                    Py_XDECREF(random);
                    double r = draw == NULL ? -1.0 : PyFloat_AsDouble(draw);
                    Py_XDECREF(draw);
                    if (!PyErr_Occurred()) index = (Py_ssize_t)(r * (double)(seen + 1));
                }
                if (!PyErr_Occurred())
                    status = index < size ? offer_at(reservoir, index, amount, now, attributes, ctx) : 0;
            }
            status = lock_exit(&lock, status);
        }
    } else {
        PyObject *call[] = {reservoir, amount, now, attributes, ctx};
        PyObject *done = PyObject_VectorcallMethod(s_offer, call, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        status = done == NULL ? -1 : 0;
        Py_XDECREF(done);
    }
    Py_DECREF(reservoir);
    return status;
}

/* The SDK's _SumAggregation.aggregate step: value = (0 if value is None else value) + amount. */
static int add_to_sum(PyObject *aggregation, PyObject *amount) {
    PyObject *lock;
    if (lock_enter(aggregation, &lock) < 0) return -1;
    int status = -1;
    PyObject *total = PyObject_GetAttr(aggregation, s_value);
    if (total != NULL) {
        PyObject *base = total == Py_None ? M_zero : total;
        status = set_new(aggregation, s_value, PyNumber_Add(base, amount));
        Py_DECREF(total);
    }
    return lock_exit(&lock, status);
}

/* The SDK's _ExplicitBucketHistogramAggregation.aggregate step. */
static int add_to_histogram(PyObject *aggregation, PyObject *amount) {
    PyObject *lock;
    if (lock_enter(aggregation, &lock) < 0) return -1;
    int status = -1;
    PyObject *counts = PyObject_GetAttr(aggregation, s_value), *value = NULL, *boundaries = NULL;
    if (counts == Py_None) {
        Py_DECREF(counts);
        counts = PyObject_CallMethodNoArgs(aggregation, s_empty_counts);
        if (counts != NULL && PyObject_SetAttr(aggregation, s_value, counts) < 0) Py_CLEAR(counts);
    }
    if (counts == NULL) goto done;
    value = PyObject_GetAttr(aggregation, s_sum);
    if (value == NULL || set_new(aggregation, s_sum, PyNumber_Add(value, amount)) < 0) goto done;
    Py_CLEAR(value);
    value = PyObject_GetAttr(aggregation, s_record_min_max);
    int min_max = value == NULL ? -1 : PyObject_IsTrue(value);
    Py_CLEAR(value);
    if (min_max < 0) goto done;
    if (min_max) { /* min(self._min, amount) is amount only when amount < self._min; max likewise */
        PyObject *names[] = {s_min, s_max};
        int ops[] = {Py_LT, Py_GT};
        for (int i = 0; i < 2; i++) {
            value = PyObject_GetAttr(aggregation, names[i]);
            int replace = value == NULL ? -1 : PyObject_RichCompareBool(amount, value, ops[i]);
            Py_CLEAR(value);
            if (replace < 0 || (replace && PyObject_SetAttr(aggregation, names[i], amount) < 0)) goto done;
        }
    }
    boundaries = PyObject_GetAttr(aggregation, s_boundaries);
    Py_ssize_t index = boundaries == NULL ? -1 : bisect_left(boundaries, amount);
    if (index < 0) goto done;
    PyObject *key = PyLong_FromSsize_t(index);
    value = key == NULL ? NULL : PyObject_GetItem(counts, key);
    if (value != NULL) {
        PyObject *one = PyLong_FromLong(1), *added = one == NULL ? NULL : PyNumber_Add(value, one);
        Py_XDECREF(one);
        if (added != NULL) {
            status = PyObject_SetItem(counts, key, added);
            Py_DECREF(added);
        }
    }
    Py_XDECREF(key);
done:
    Py_XDECREF(value);
    Py_XDECREF(boundaries);
    Py_XDECREF(counts);
    return lock_exit(&lock, status);
}

/* _fastsdk.time_ns(): clock_gettime while it is time.time_ns (the same clock), else the function there. */
static PyObject *time_now_ns(void) {
    PyObject *clock = from_namespace(s_n_time_ns);
    if (clock == NULL) return NULL;
    if (clock != M_real_time_ns) {
        PyObject *patched = PyObject_CallNoArgs(clock);
        Py_DECREF(clock);
        return patched;
    }
    Py_DECREF(clock);
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLongLong((long long)now.tv_sec * 1000000000LL + (long long)now.tv_nsec);
}

/* A plain, finite, non-negative magnitude (as _record checks it): 1, else 0 (the Python path decides). */
static int measurable(PyObject *amount, PyObject *magnitude) {
    double value;
    if (!PyLong_CheckExact(amount) && !PyFloat_CheckExact(amount)) return 0;
    if (PyFloat_CheckExact(magnitude)) {
        value = PyFloat_AS_DOUBLE(magnitude);
    } else if (PyLong_CheckExact(magnitude)) {
        value = PyLong_AsDouble(magnitude); /* an int too large for a float: the Python path raises as before */
        if (value == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    } else {
        return 0;
    }
    return value >= 0 && isfinite(value);
}

/* record(instrument, amount, magnitude, attributes, context) -> bool: True when recorded (see above). */
static PyObject *record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "record(instrument, amount, magnitude, attributes, context)");
        return NULL;
    }
    if (M_consumer_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "record: configure_metrics() was not called");
        return NULL;
    }
    PyObject *instrument = args[0], *amount = args[1], *attributes = args[3], *context = args[4];
    if (!measurable(amount, args[2])) Py_RETURN_FALSE;
    PyObject *copy = NULL, *key = NULL, *consumer = NULL, *now = NULL, *ctx = NULL, *answer = NULL, *result = NULL;
    if (attributes == Py_None) {
        copy = Py_NewRef(Py_None);
        key = Py_NewRef(M_no_attributes);
    } else {
        if (!PyDict_CheckExact(attributes)) Py_RETURN_FALSE;
        PyObject *kinds = plain(NULL, attributes);
        if (kinds == NULL) return NULL;
        long plain_kinds = PyLong_AsLong(kinds);
        Py_DECREF(kinds);
        if (plain_kinds != 1) Py_RETURN_FALSE; /* refused by the SDK, or never a remembered series */
        copy = PyDict_Copy(attributes);
        PyObject *items = copy == NULL ? NULL : PyDict_Items(copy);
        key = items == NULL ? NULL : PyFrozenSet_New(items);
        Py_XDECREF(items);
        if (key == NULL) goto done;
    }
    consumer = PyObject_GetAttr(instrument, s_consumer);
    if (consumer == NULL) goto done;
    if ((PyObject *)Py_TYPE(consumer) != M_consumer_type) {
        result = Py_NewRef(Py_False);
        goto done;
    }
    PyObject *routes = PyObject_GetAttr(instrument, s_routes);
    if (routes == NULL) goto done;
    PyObject *aggregations = PyDict_Check(routes) ? PyDict_GetItemWithError(routes, key) : NULL;
    Py_XINCREF(aggregations);
    Py_DECREF(routes);
    if (aggregations == NULL || !PyTuple_CheckExact(aggregations)) {
        Py_XDECREF(aggregations);
        if (!PyErr_Occurred()) result = Py_NewRef(Py_False); /* a new series: the Python path consumes it */
        goto done;
    }
    /* _is_enabled(): `self._meter_config is None or self._meter_config.is_enabled`, the proxy's
       property being `self._config.is_enabled`; any other config type answers through the method */
    PyObject *meter_config = PyObject_GetAttr(instrument, s_meter_config), *enabled = NULL;
    int on = meter_config == NULL ? -1 : 1;
    if (meter_config != NULL && meter_config != Py_None) {
        if ((PyObject *)Py_TYPE(meter_config) == M_proxy_config_type) {
            PyObject *config = PyObject_GetAttr(meter_config, s_config_field);
            enabled = config == NULL ? NULL : PyObject_GetAttr(config, s_is_enabled_field);
            Py_XDECREF(config);
        } else {
            enabled = PyObject_CallMethodNoArgs(instrument, s_is_enabled);
        }
        on = enabled == NULL ? -1 : PyObject_IsTrue(enabled);
        Py_XDECREF(enabled);
    }
    Py_XDECREF(meter_config);
    if (on <= 0) {
        Py_DECREF(aggregations);
        if (on == 0) result = Py_NewRef(Py_True); /* a disabled instrument records nothing */
        goto done;
    }
    now = time_now_ns();
    int given = now == NULL ? -1 : context == Py_None ? 0 : PyObject_IsTrue(context); /* `context or get_current()` */
    ctx = given < 0 ? NULL : given ? Py_NewRef(context) : PyObject_CallNoArgs(M_get_current);
    answer = ctx == NULL ? NULL : sampled(consumer, amount, now, copy, ctx);
    if (answer == NULL) {
        Py_DECREF(aggregations);
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(aggregations); i++) {
        PyObject *aggregation = PyTuple_GET_ITEM(aggregations, i);
        PyObject *type = (PyObject *)Py_TYPE(aggregation);
        int status;
        if (type == M_sum_type) {
            status = add_to_sum(aggregation, amount);
        } else if (type == M_hist_type) {
            status = add_to_histogram(aggregation, amount);
        } else { /* any other aggregation: its own aggregate(), which samples for itself */
            PyObject *call[] = {aggregation, instrument, amount, now, ctx, copy, answer};
            PyObject *other = from_namespace(s_n_other);
            PyObject *done = other == NULL ? NULL : PyObject_Vectorcall(other, call, 7, NULL);
            Py_XDECREF(other);
            Py_XDECREF(done);
            if (done == NULL) {
                Py_DECREF(aggregations);
                goto done;
            }
            continue;
        }
        if (status == 0) { /* `if sample:` per aggregation, after its update */
            int sample = PyObject_IsTrue(answer);
            status = sample < 0 ? -1 : sample ? reservoir_offer(aggregation, amount, now, copy, ctx) : 0;
        }
        if (status < 0) {
            Py_DECREF(aggregations);
            goto done;
        }
    }
    Py_DECREF(aggregations);
    result = Py_NewRef(Py_True);
done:
    Py_XDECREF(copy);
    Py_XDECREF(key);
    Py_XDECREF(consumer);
    Py_XDECREF(now);
    Py_XDECREF(ctx);
    Py_XDECREF(answer);
    return result;
}

/* --- traces: starting a span ------------------------------------------------------------- */

/*
 * start_span() is _fastsdk._FastTracer.start_span for the spans every request starts: the
 * SDK's own samplers (sampler_rule() below), the SDK's RandomIdGenerator, no links, plain
 * attributes within the span limits. It answers None before drawing an id or making an
 * object whenever the Python method must decide (any other sampler, id generator, parent,
 * limit or attribute; a disabled tracer), and otherwise does the Python method's steps in
 * its order, a span not sampled ending as a NonRecordingSpan after the tracer's metrics:
 * the ids drawn with
 * _fastsdk's `_getrandbits` (looked up at each use, so a seeded or patched draw reaches both
 * paths alike; a draw of 0 asks the generator), the SpanContext tuple, the tracer's own
 * metrics (NoOpTracerMetrics' answer taken without its call), the _FastSpan and
 * _FastAttributes fields in their constructors' order, then Span.start (the SDK module's
 * `time_ns`, the span processor's on_start through dispatch()). The tracer's _is_enabled,
 * while it is the SDK's, is its one read. tests/test_fastsdk.py compares the spans of both
 * paths with the SDK's.
 */
/* the log and span processors' names (logs section below), also read by the span end */
static PyObject *L_processor_type, *L_queued_type;
static PyObject *s_l_multi, *s_l_processors, *s_l_limits, *s_l_max_attributes, *s_l_max_attribute_length,
    *s_l_is_enabled, *s_l_metrics, *s_l_emit_log, *s_l_batch, *s_l_queue, *s_l_max_queue, *s_l_shutdown,
    *s_l_appendleft, *s_l_awaken, *s_l_max_batch, *s_l_flag, *s_l_set, *s_n_enqueue;
static int enqueue_item(PyObject *owner, PyObject *item);

static PyObject *T_tracer_type, *T_span_type, *T_attributes_type, *T_random_ids_type, *T_default_on,
    *T_record_and_sample, *T_flags[2], *T_trace_state, *T_unset_status, *T_lock_factory, *T_sdk_namespace,
    *T_max_trace_id, *T_max_span_id, *T_empty_args, *T_parent_context_kw;
static PyObject *s_n_getrandbits, *s_t_sampler, *s_t_id_generator, *s_t_resource, *s_t_span_limits,
    *s_t_max_attributes, *s_t_max_attribute_length, *s_t_tracer_metrics, *s_t_start_span, *s_t_span_processor,
    *s_t_on_start, *s_t_generate_trace_id, *s_t_generate_span_id, *s_t_instrumentation_info,
    *s_t_instrumentation_scope, *s_t_info_field, *s_t_sampler_field, *s_t_resource_field, *s_t_trace_config,
    *s_t_record_exception, *s_t_set_status, *s_t_span_processor_field, *s_t_limits, *s_t_record_end_metrics,
    *s_t_dict, *s_t_maxlen, *s_t_dropped, *s_t_max_value_len, *s_t_immutable, *s_t_time_ns, *s_t_set_items;

/* 1 when every key is a non-empty str and every value an exact str, int, float or bool (plain() != 0). */
static int all_plain(PyObject *attributes) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value))
        if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) == 0 || !plain_value(value)) return 0;
    return 1;
}

/* A count limit as the C paths read it: None is no limit (PY_SSIZE_T_MAX), an exact int from 0 within
   Py_ssize_t is itself, anything else is -1 (the Python code decides). It leaves no exception set. */
static Py_ssize_t count_limit(PyObject *maxlen) {
    if (maxlen == Py_None) return PY_SSIZE_T_MAX;
    if (!PyLong_CheckExact(maxlen)) return -1;
    Py_ssize_t most = PyLong_AsSsize_t(maxlen);
    if (most == -1 && PyErr_Occurred()) PyErr_Clear(); /* a limit beyond any size */
    return most < 0 ? -1 : most;
}

/* A drawn id (`_getrandbits(bits) or generator.method()`), a new reference. */
static PyObject *draw_id(PyObject *getrandbits, int bits, PyObject *generator, PyObject *method) {
    PyObject *size = PyLong_FromLong(bits);
    if (size == NULL) return NULL;
    PyObject *id = PyObject_CallOneArg(getrandbits, size);
    Py_DECREF(size);
    if (id == NULL) return NULL;
    int truth = PyObject_IsTrue(id);
    if (truth > 0) return id;
    Py_DECREF(id);
    return truth < 0 ? NULL : PyObject_CallMethodNoArgs(generator, method);
}

/* 0 < id <= most, as the SpanContext's validity is computed. */
static int id_in_range(PyObject *id, PyObject *most) {
    int above = PyObject_RichCompareBool(M_zero, id, Py_LT);
    if (above <= 0) return above;
    return PyObject_RichCompareBool(id, most, Py_LE);
}

/* Set the fields in order (each value a new reference, stolen; NULL stops at the first failure). */
static int set_fields(PyObject *owner, PyObject **names, PyObject **values, int count) {
    int status = 0;
    for (int i = 0; i < count; i++) {
        if (status == 0) status = values[i] == NULL ? -1 : PyObject_SetAttr(owner, names[i], values[i]);
        Py_XDECREF(values[i]);
    }
    return status;
}

/* span processor dispatch (below the span end): which method, and the registered functions */
enum { ON_START, ON_ENDING, ON_END };
static int dispatch(PyObject *processor, int which, PyObject *span, PyObject *context);
static PyObject *D_is_enabled, *D_noop_metrics_type, *D_noop_metrics_start, *D_noop;
static int sdk_method_is(PyObject *owner, PyObject *name, PyObject *function);
static PyObject *tracer_config_enabled(PyObject *tracer);

/*
 * Sampling without the sampler's call (configure_sampling; until then only the default sampler with a
 * sampled or no parent): the SDK's own samplers as OTEL_TRACES_SAMPLER makes them (ParentBased and its
 * subclasses, TraceIdRatioBased, the static always_on and always_off), decided from the parent's
 * validity, remote and sampled flags and the trace id's low 64 bits, as their should_sample decide. A
 * sampler of another type, a should_sample that is not the SDK's (patched on the class or the object),
 * a static RECORD_ONLY or a ParentBased delegating to a ParentBased leaves the span to the Python method.
 */
static PyObject *S_parent_based_types, *S_parent_based_should_sample, *S_ratio_type, *S_ratio_should_sample,
    *S_static_types, *S_static_should_sample, *S_drop, *S_unsampled_flags[2], *S_non_recording_type;
static PyObject *s_s_should_sample, *s_s_root, *s_s_remote_sampled, *s_s_remote_not_sampled, *s_s_local_sampled,
    *s_s_local_not_sampled, *s_s_decision, *s_s_limit, *s_s_bound;
enum { RULE_ERROR = -1, RULE_DROP, RULE_SAMPLE, RULE_RATIO, RULE_DECLINE };

static int type_in(PyObject *object, PyObject *types) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(types); i++)
        if ((PyObject *)Py_TYPE(object) == PyTuple_GET_ITEM(types, i)) return 1;
    return 0;
}

/* The rule of a sampler that delegates to none: a static decision, the trace id ratio, or decline. */
static int leaf_rule(PyObject *sampler) {
    if (type_in(sampler, S_static_types)) {
        int own = sdk_method_is(sampler, s_s_should_sample, S_static_should_sample);
        if (own <= 0) return own < 0 ? RULE_ERROR : RULE_DECLINE;
        PyObject *decision = PyObject_GetAttr(sampler, s_s_decision);
        if (decision == NULL) return RULE_ERROR;
        int rule = decision == T_record_and_sample ? RULE_SAMPLE : decision == S_drop ? RULE_DROP : RULE_DECLINE;
        Py_DECREF(decision);
        return rule;
    }
    if ((PyObject *)Py_TYPE(sampler) != S_ratio_type) return RULE_DECLINE;
    int own = sdk_method_is(sampler, s_s_should_sample, S_ratio_should_sample);
    return own < 0 ? RULE_ERROR : own ? RULE_RATIO : RULE_DECLINE;
}

/* The rule of the tracer's sampler for a span under `parent` (a valid SpanContext, or NULL for a root),
   read before anything is drawn; for RULE_RATIO, *ratio is the TraceIdRatioBased to ask (a new reference). */
static int sampler_rule(PyObject *sampler, PyObject *parent, int parent_sampled, PyObject **ratio) {
    if (sampler == T_default_on && (parent == NULL || parent_sampled)) return RULE_SAMPLE;
    if (S_parent_based_types == NULL) return RULE_DECLINE;
    if (sampler == T_default_on) return RULE_DROP;
    if (!type_in(sampler, S_parent_based_types)) {
        int rule = leaf_rule(sampler);
        if (rule == RULE_RATIO) *ratio = Py_NewRef(sampler);
        return rule;
    }
    int own = sdk_method_is(sampler, s_s_should_sample, S_parent_based_should_sample);
    if (own <= 0) return own < 0 ? RULE_ERROR : RULE_DECLINE;
    PyObject *name = s_s_root;
    if (parent != NULL) {
        int remote = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 2));
        if (remote < 0) return RULE_ERROR;
        name = remote ? (parent_sampled ? s_s_remote_sampled : s_s_remote_not_sampled)
                      : (parent_sampled ? s_s_local_sampled : s_s_local_not_sampled);
    }
    PyObject *delegate = PyObject_GetAttr(sampler, name);
    if (delegate == NULL) return RULE_ERROR;
    int rule = leaf_rule(delegate);
    if (rule == RULE_RATIO)
        *ratio = delegate;
    else
        Py_DECREF(delegate);
    return rule;
}

/* TraceIdRatioBased.should_sample's test: trace_id & TRACE_ID_LIMIT < bound (1, 0, or -1 on an error). */
static int ratio_samples(PyObject *ratio, PyObject *trace_id) {
    PyObject *limit = PyObject_GetAttr(ratio, s_s_limit);
    PyObject *bound = limit == NULL ? NULL : PyObject_GetAttr(ratio, s_s_bound);
    PyObject *low = bound == NULL ? NULL : PyNumber_And(trace_id, limit);
    int below = low == NULL ? -1 : PyObject_RichCompareBool(low, bound, Py_LT);
    Py_XDECREF(limit);
    Py_XDECREF(bound);
    Py_XDECREF(low);
    return below;
}

static PyObject *start_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "start_span(tracer, name, context, kind, attributes, links, start_time, record_exception, "
                        "set_status_on_exception)");
        return NULL;
    }
    PyObject *tracer = args[0], *name = args[1], *context = args[2], *kind = args[3], *attributes = args[4],
             *links = args[5], *start_time = args[6];
    if (T_tracer_type == NULL || M_namespace == NULL || (PyObject *)Py_TYPE(tracer) != T_tracer_type) Py_RETURN_NONE;
    if (!(links == Py_None || (PyTuple_CheckExact(links) && PyTuple_GET_SIZE(links) == 0) ||
          (PyList_CheckExact(links) && PyList_GET_SIZE(links) == 0)))
        Py_RETURN_NONE;
    if (attributes != Py_None && !PyDict_CheckExact(attributes)) Py_RETURN_NONE;

    PyObject *result = NULL, *sampler = NULL, *ids = NULL, *resource = NULL, *limits = NULL, *maxlen = NULL,
             *max_value_len = NULL, *ctx = NULL, *current = NULL, *parent = NULL, *enabled = NULL,
             *getrandbits = NULL, *trace_id = NULL, *span_id = NULL, *span_context = NULL, *end_metrics = NULL,
             *processor = NULL, *span = NULL, *bounded = NULL, *stored = NULL, *now = NULL, *info = NULL,
             *scope = NULL, *lock = NULL, *bounded_lock = NULL, *ratio = NULL;
    /* What the Python method reads before it draws anything: decline on anything unusual. */
    sampler = PyObject_GetAttr(tracer, s_t_sampler);
    if (sampler == NULL) goto done;
    ids = PyObject_GetAttr(tracer, s_t_id_generator);
    if (ids == NULL) goto done;
    resource = PyObject_GetAttr(tracer, s_t_resource);
    if (resource == NULL) goto done;
    limits = PyObject_GetAttr(tracer, s_t_span_limits);
    if (limits == NULL) goto done;
    maxlen = PyObject_GetAttr(limits, s_t_max_attributes);
    if (maxlen == NULL) goto done;
    max_value_len = PyObject_GetAttr(limits, s_t_max_attribute_length);
    if (max_value_len == NULL) goto done;
    Py_ssize_t most = count_limit(maxlen);
    if ((PyObject *)Py_TYPE(ids) != T_random_ids_type || resource == Py_None ||
        max_value_len != Py_None || most < 0)
        goto decline;
    Py_ssize_t count = attributes == Py_None ? 0 : PyDict_GET_SIZE(attributes);
    if (count > most) goto decline;
    if (count > 0 && !all_plain(attributes)) goto decline;

    ctx = context != Py_None ? Py_NewRef(context) : PyObject_CallNoArgs(M_get_current);
    if (ctx == NULL) goto done;
    current = span_of(ctx);
    if (current == NULL) goto done;
    parent = span_context_of(current);
    if (parent == NULL) goto done;
    if ((PyObject *)Py_TYPE(parent) != M_span_context_type || PyTuple_GET_SIZE(parent) != 6) goto decline;
    int valid = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 5)); /* parent.is_valid */
    if (valid < 0) goto done;
    int random_id = 1, parent_sampled = 1;
    if (valid) {
        PyObject *flags = PyTuple_GET_ITEM(parent, 3);
        if ((PyObject *)Py_TYPE(flags) != M_trace_flags_type) goto decline;
        unsigned long bits = PyLong_AsUnsignedLongMask(flags); /* the low bits, as & reads them */
        if (bits == (unsigned long)-1 && PyErr_Occurred()) goto done;
        parent_sampled = (bits & 1) != 0;
        random_id = (bits & 2) != 0;
    } else {
        Py_CLEAR(parent);
    }
    int rule = sampler_rule(sampler, parent, parent_sampled, &ratio);
    if (rule == RULE_ERROR) goto done;
    if (rule == RULE_DECLINE) goto decline;
    int own_check = sdk_method_is(tracer, s_is_enabled, D_is_enabled);
    if (own_check < 0) goto done;
    enabled = own_check ? tracer_config_enabled(tracer) /* Tracer._is_enabled's one read, without its call */
                        : PyObject_CallMethodNoArgs(tracer, s_is_enabled);
    if (enabled == NULL) goto done;
    int on = PyObject_IsTrue(enabled);
    if (on < 0) goto done;
    if (!on) goto decline;

    /* From here on, the Python method's steps in its order. */
    getrandbits = from_namespace(s_n_getrandbits);
    if (getrandbits == NULL) goto done;
    if (parent != NULL)
        trace_id = Py_NewRef(PyTuple_GET_ITEM(parent, 0));
    else
        trace_id = draw_id(getrandbits, 128, ids, s_t_generate_trace_id);
    if (trace_id == NULL) goto done;
    int sample = rule == RULE_SAMPLE;
    if (rule == RULE_RATIO && (sample = ratio_samples(ratio, trace_id)) < 0) goto done; /* the sampler's turn */
    span_id = draw_id(getrandbits, 64, ids, s_t_generate_span_id);
    if (span_id == NULL) goto done;
    int trace_ok = id_in_range(trace_id, T_max_trace_id);
    int span_ok = trace_ok <= 0 ? 0 : id_in_range(span_id, T_max_span_id);
    if (trace_ok < 0 || span_ok < 0) goto done;
    PyObject *state = parent != NULL ? PyTuple_GET_ITEM(parent, 4) : Py_None;
    span_context = ((PyTypeObject *)M_span_context_type)->tp_alloc((PyTypeObject *)M_span_context_type, 6);
    if (span_context == NULL) goto done;
    PyObject *items[] = {trace_id,
                         span_id,
                         Py_False,
                         sample ? T_flags[random_id] : S_unsampled_flags[random_id],
                         state != Py_None ? state : T_trace_state,
                         (trace_ok && span_ok) ? Py_True : Py_False};
    for (int i = 0; i < 6; i++) PyTuple_SET_ITEM(span_context, i, Py_NewRef(items[i]));
    untrack(span_context);
    PyObject *metric_args[] = {NULL, parent != NULL ? parent : Py_None, sample ? T_record_and_sample : S_drop};
    PyObject *tracer_metrics = PyObject_GetAttr(tracer, s_t_tracer_metrics);
    if (tracer_metrics == NULL) goto done;
    metric_args[0] = tracer_metrics;
    int no_metrics = (PyObject *)Py_TYPE(tracer_metrics) != D_noop_metrics_type
                         ? 0
                         : sdk_method_is(tracer_metrics, s_t_start_span, D_noop_metrics_start);
    if (no_metrics > 0)
        end_metrics = Py_NewRef(D_noop); /* what NoOpTracerMetrics.start_span returns, without its call */
    else if (no_metrics == 0)
        end_metrics =
            PyObject_VectorcallMethod(s_t_start_span, metric_args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(tracer_metrics);
    if (end_metrics == NULL) goto done;
    if (!sample) { /* not recorded: no span object, processors or export */
        result = PyObject_CallOneArg(S_non_recording_type, span_context);
        goto done;
    }
    processor = PyObject_GetAttr(tracer, s_t_span_processor);
    if (processor == NULL) goto done;
    info = PyObject_GetAttr(tracer, s_t_instrumentation_info); /* read before the span is made, as Python does */
    if (info == NULL) goto done;
    scope = PyObject_GetAttr(tracer, s_t_instrumentation_scope);
    if (scope == NULL) goto done;

    span = PyBaseObject_Type.tp_new((PyTypeObject *)T_span_type, T_empty_args, NULL);
    if (span == NULL) goto done;
    lock = PyObject_CallNoArgs(T_lock_factory);
    if (lock == NULL) goto done;
    PyObject *head_names[] = {s_name,           s_context,       s_kind,     s_t_info_field,
                              s_t_instrumentation_scope, s_parent, s_start_time, s_end_time,
                              s_t_resource_field, s_status,     s_t_sampler_field, s_t_trace_config,
                              s_t_record_exception, s_t_set_status, s_t_span_processor_field, s_t_limits,
                              s_lock};
    PyObject *head[] = {Py_NewRef(name),
                        Py_NewRef(span_context),
                        Py_NewRef(kind),
                        Py_NewRef(info),
                        Py_NewRef(scope),
                        Py_NewRef(parent != NULL ? parent : Py_None),
                        Py_NewRef(Py_None),
                        Py_NewRef(Py_None),
                        Py_NewRef(resource),
                        Py_NewRef(T_unset_status),
                        Py_NewRef(sampler),
                        Py_NewRef(Py_None),
                        Py_NewRef(args[7]),
                        Py_NewRef(args[8]),
                        Py_NewRef(processor),
                        Py_NewRef(limits),
                        Py_NewRef(lock)};
    if (set_fields(span, head_names, head, 17) < 0) goto done;
    bounded = PyBaseObject_Type.tp_new((PyTypeObject *)T_attributes_type, T_empty_args, NULL);
    if (bounded == NULL) goto done;
    stored = PyDict_New();
    if (stored == NULL) goto done;
    bounded_lock = PyObject_CallNoArgs(T_lock_factory);
    if (bounded_lock == NULL) goto done;
    PyObject *bounded_names[] = {s_t_dict, s_t_maxlen, s_t_dropped, s_t_max_value_len, s_lock, s_t_immutable};
    PyObject *bounded_values[] = {Py_NewRef(stored), Py_NewRef(maxlen), Py_NewRef(M_zero), Py_NewRef(Py_None),
                                  Py_NewRef(bounded_lock), Py_NewRef(Py_False)};
    if (set_fields(bounded, bounded_names, bounded_values, 6) < 0) goto done;
    if (attributes != Py_None && PyDict_GET_SIZE(attributes) > 0) {
        /* checked again now: Python code ran since the first check, and the Python method checks here */
        if (PyDict_GET_SIZE(attributes) <= most && all_plain(attributes)) {
            if (PyDict_Update(stored, attributes) < 0) goto done;
        } else {
            PyObject *r = PyObject_CallMethodOneArg(bounded, s_t_set_items, attributes);
            if (r == NULL) goto done;
            Py_DECREF(r);
        }
    }
    PyObject *tail_names[] = {s_attributes, s_events, s_links, s_t_record_end_metrics};
    PyObject *tail[] = {Py_NewRef(bounded), Py_NewRef(T_empty_args), Py_NewRef(T_empty_args), Py_NewRef(end_metrics)};
    if (set_fields(span, tail_names, tail, 4) < 0) goto done;

    /* Span.start(start_time=start_time, parent_context=context): a new span was never started. */
    if (start_time != Py_None) {
        now = Py_NewRef(start_time);
    } else {
        PyObject *clock = PyDict_GetItemWithError(T_sdk_namespace, s_t_time_ns);
        if (clock == NULL) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_NameError, "name %R is not defined", s_t_time_ns);
            goto done;
        }
        Py_INCREF(clock);
        now = PyObject_CallNoArgs(clock);
        Py_DECREF(clock);
    }
    if (now == NULL || PyObject_SetAttr(span, s_start_time, now) < 0) goto done;
    if (dispatch(processor, ON_START, span, context) < 0) goto done;
    result = Py_NewRef(span);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(sampler);
    Py_XDECREF(ids);
    Py_XDECREF(resource);
    Py_XDECREF(limits);
    Py_XDECREF(maxlen);
    Py_XDECREF(max_value_len);
    Py_XDECREF(ctx);
    Py_XDECREF(current);
    Py_XDECREF(parent);
    Py_XDECREF(enabled);
    Py_XDECREF(getrandbits);
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(span_context);
    Py_XDECREF(end_metrics);
    Py_XDECREF(processor);
    Py_XDECREF(span);
    Py_XDECREF(bounded);
    Py_XDECREF(stored);
    Py_XDECREF(now);
    Py_XDECREF(info);
    Py_XDECREF(scope);
    Py_XDECREF(lock);
    Py_XDECREF(bounded_lock);
    Py_XDECREF(ratio);
    return result;
}

/*
 * end_span() is _FastSpan.end_as for a live span ending with plain attributes: under the
 * span's lock (and the attribute container's, as _FastAttributes._set_items takes it) the
 * name, the attributes (a re-set key moves to the end, as in the SDK), the end time from
 * _fastsdk's `time_ns` and the frozen container; then the tracer's end metrics (the SDK's
 * noop is not called), the span processor's _on_ending and on_end (both through dispatch())
 * with the ended-span snapshot (_FastSpan._readable_span's fields in its order, the
 * attributes a plain dict unless some were dropped). It answers False, having changed
 * nothing, for any other span or input, and end_as decides.
 */
static PyObject *T_readable_type;
static PyObject *s_t_on_ending, *s_t_on_end, *s_t_span_processors;
/* configure_span_owners(): the SDK's multi span processor and our own processors, which keep an
   ended span's snapshot only in our export queue; NULL until configured: no snapshot is untracked. */
static PyObject *T_multi_type, *T_owned_types;

/* 1 when every processor behind `processor` is one of ours (see untrack()), else 0; never raises. */
static int only_owned_processors(PyObject *processor) {
    if (T_multi_type == NULL || (PyObject *)Py_TYPE(processor) != T_multi_type) return 0;
    PyObject *all = PyObject_GetAttr(processor, s_t_span_processors);
    if (all == NULL) {
        PyErr_Clear();
        return 0;
    }
    int owned = PyTuple_CheckExact(all);
    for (Py_ssize_t i = 0; owned && i < PyTuple_GET_SIZE(all); i++) {
        PyObject *type = (PyObject *)Py_TYPE(PyTuple_GET_ITEM(all, i));
        owned = 0;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(T_owned_types); j++)
            if (PyTuple_GET_ITEM(T_owned_types, j) == type) owned = 1;
    }
    Py_DECREF(all);
    return owned;
}

static PyObject *configure_span_owners(PyObject *self, PyObject *args) {
    PyObject *multi, *owned;
    if (!PyArg_ParseTuple(args, "OO!:configure_span_owners", &multi, &PyTuple_Type, &owned)) return NULL;
    if (!PyType_Check(multi)) {
        PyErr_SetString(PyExc_TypeError, "configure_span_owners: the multi span processor must be a type");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(owned); i++) {
        if (!PyType_Check(PyTuple_GET_ITEM(owned, i))) {
            PyErr_SetString(PyExc_TypeError, "configure_span_owners: the owned processors must be types");
            return NULL;
        }
    }
    Py_XSETREF(T_multi_type, Py_NewRef(multi));
    Py_XSETREF(T_owned_types, Py_NewRef(owned));
    Py_RETURN_NONE;
}

/*
 * dispatch() runs processor.on_start(span, parent_context=context), ._on_ending(span) or
 * .on_end(span) as the SDK's SynchronousMultiSpanProcessor does: each processor's method in
 * their order, the first exception stopping the rest. When `processor` is that multi
 * processor with its own method (configure_span_dispatch), the loop runs here: a method that
 * is a function registered for that name as doing nothing, with the code it had then, is not
 * called (the SDK's base and batch processors' on_start and _on_ending, our key processor's
 * on_end), and FastBatchSpanProcessor.on_end's
 * usual case (an exact SpanContext) is done here, queueing as _fastsdk._enqueue does. Every
 * method is looked up on its processor as Python looks it up, so a method replaced on a class
 * or an instance is called. Anything else gets the Python call. 0, or -1 with an exception.
 */
static PyObject *D_multi_type, *D_multi_methods, *D_noops, *D_batch_on_end, *D_config;

/* 1 when `owner.<name>` is the bound method of `function` (looked up as Python does), 0 when it is
   anything else or missing (the Python call says so), -1 with the exception of a failing lookup. */
static int sdk_method_is(PyObject *owner, PyObject *name, PyObject *function) {
    if (function == NULL) return 0;
    PyObject *bound = PyObject_GetAttr(owner, name);
    if (bound == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear();
        return 0;
    }
    int same = PyMethod_Check(bound) && PyMethod_GET_SELF(bound) == owner && PyMethod_GET_FUNCTION(bound) == function;
    Py_DECREF(bound);
    return same;
}

/* tracer._tracer_config.is_enabled, a new reference. */
static PyObject *tracer_config_enabled(PyObject *tracer) {
    PyObject *config = PyObject_GetAttr(tracer, D_config);
    if (config == NULL) return NULL;
    PyObject *enabled = PyObject_GetAttr(config, s_is_enabled_field);
    Py_DECREF(config);
    return enabled;
}

static PyObject *method_name(int which) {
    return which == ON_START ? s_t_on_start : which == ON_ENDING ? s_t_on_ending : s_t_on_end;
}

/* bound(span) or, for on_start, bound(span, parent_context=context). */
static int call_bound(PyObject *bound, int which, PyObject *span, PyObject *context) {
    PyObject *call[] = {NULL, span, context};
    PyObject *done = which == ON_START
                         ? PyObject_Vectorcall(bound, call + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, T_parent_context_kw)
                         : PyObject_Vectorcall(bound, call + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
}

/* FastBatchSpanProcessor.on_end(span) for an exact SpanContext: queued when sampled. 1 done, 0 not
   this case (the method decides), -1 with an exception. */
static int batch_on_end(PyObject *processor, PyObject *span) {
    PyObject *span_context = PyObject_GetAttr(span, s_context);
    if (span_context == NULL) return -1;
    int status = 0;
    if ((PyObject *)Py_TYPE(span_context) == M_span_context_type && PyTuple_GET_SIZE(span_context) == 6) {
        PyObject *flags = PyTuple_GET_ITEM(span_context, 3);
        unsigned long bits = PyLong_Check(flags) ? PyLong_AsUnsignedLongMask(flags) : 0;
        if (bits == (unsigned long)-1 && PyErr_Occurred()) status = -1;
        else if (PyLong_Check(flags)) status = !(bits & 1) ? 1 : enqueue_item(processor, span) < 0 ? -1 : 1;
    }
    Py_DECREF(span_context);
    return status;
}

static int dispatch(PyObject *processor, int which, PyObject *span, PyObject *context) {
    PyObject *name = method_name(which);
    PyObject *bound = PyObject_GetAttr(processor, name);
    if (bound == NULL) return -1;
    if (D_multi_methods == NULL || (PyObject *)Py_TYPE(processor) != D_multi_type || !PyMethod_Check(bound) ||
        PyMethod_GET_SELF(bound) != processor || PyMethod_GET_FUNCTION(bound) != PyTuple_GET_ITEM(D_multi_methods, which)) {
        int status = call_bound(bound, which, span, context);
        Py_DECREF(bound);
        return status;
    }
    PyObject *all = PyObject_GetAttr(processor, s_t_span_processors);
    if (all == NULL || !PyTuple_CheckExact(all)) { /* not the SDK's tuple: its own method loops */
        Py_XDECREF(all);
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            int status = call_bound(bound, which, span, context);
            Py_DECREF(bound);
            return status;
        }
        Py_DECREF(bound);
        return -1;
    }
    Py_DECREF(bound);
    int status = 0;
    for (Py_ssize_t i = 0; status == 0 && i < PyTuple_GET_SIZE(all); i++) {
        PyObject *each = PyTuple_GET_ITEM(all, i); /* held by `all` */
        PyObject *method = PyObject_GetAttr(each, name);
        if (method == NULL) {
            status = -1;
            break;
        }
        PyObject *function = PyMethod_Check(method) && PyMethod_GET_SELF(method) == each ? PyMethod_GET_FUNCTION(method) : NULL;
        int skip = 0;
        if (function != NULL && PyFunction_Check(function)) {
            PyObject *empty = PyTuple_GET_ITEM(D_noops, which); /* ((function, its code), ...) for this name */
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(empty); j++) {
                PyObject *pair = PyTuple_GET_ITEM(empty, j);
                /* the code checked at registration still its code: a reassigned __code__ is called */
                if (PyTuple_GET_ITEM(pair, 0) == function && PyTuple_GET_ITEM(pair, 1) == PyFunction_GET_CODE(function))
                    skip = 1;
            }
            if (!skip && which == ON_END && function == D_batch_on_end) {
                skip = batch_on_end(each, span);
                if (skip < 0) status = -1;
            }
        }
        if (status == 0 && !skip) status = call_bound(method, which, span, context);
        Py_DECREF(method);
    }
    Py_DECREF(all);
    return status;
}

/* configure_span_dispatch(): see dispatch(). */
static PyObject *configure_span_dispatch(PyObject *self, PyObject *args) {
    PyObject *multi_type, *multi_methods, *noops, *batch_on_end_function, *is_enabled, *noop_metrics_type,
        *noop_metrics_start, *noop;
    if (!PyArg_ParseTuple(args, "O!O!O!OOO!OO:configure_span_dispatch", &PyType_Type, &multi_type, &PyTuple_Type,
                          &multi_methods, &PyTuple_Type, &noops, &batch_on_end_function, &is_enabled, &PyType_Type,
                          &noop_metrics_type, &noop_metrics_start, &noop))
        return NULL;
    int shaped = PyTuple_GET_SIZE(multi_methods) == 3 && PyTuple_GET_SIZE(noops) == 3;
    for (Py_ssize_t i = 0; shaped && i < 3; i++) {
        PyObject *pairs = PyTuple_GET_ITEM(noops, i);
        shaped = PyTuple_CheckExact(pairs);
        for (Py_ssize_t j = 0; shaped && j < PyTuple_GET_SIZE(pairs); j++) {
            PyObject *pair = PyTuple_GET_ITEM(pairs, j);
            shaped = PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2;
        }
    }
    if (!shaped || T_parent_context_kw == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_span_dispatch: (on_start, _on_ending, on_end) of the multi processor and, for "
                        "each of the three, ((function, code), ...) of the empty methods; after configure_spans");
        return NULL;
    }
    if (D_config == NULL && (D_config = PyUnicode_InternFromString("_tracer_config")) == NULL) return NULL;
    PyObject **slots[] = {&D_multi_type,  &D_multi_methods,     &D_noops,            &D_batch_on_end,
                          &D_is_enabled,  &D_noop_metrics_type, &D_noop_metrics_start, &D_noop};
    PyObject *given[] = {multi_type, multi_methods, noops, batch_on_end_function, is_enabled, noop_metrics_type,
                         noop_metrics_start, noop};
    for (int i = 0; i < 8; i++) Py_XSETREF(*slots[i], Py_NewRef(given[i]));
    Py_RETURN_NONE;
}

static PyObject *end_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "end_span(span, name, attributes)");
        return NULL;
    }
    PyObject *span = args[0], *name = args[1], *attributes = args[2];
    if (T_readable_type == NULL || (PyObject *)Py_TYPE(span) != T_span_type || !PyDict_CheckExact(attributes) ||
        !(name == Py_None || PyUnicode_CheckExact(name)) || !all_plain(attributes))
        Py_RETURN_FALSE;
    PyObject *result = NULL, *bounded = NULL, *stored = NULL, *maxlen = NULL, *max_value_len = NULL,
             *span_lock = NULL, *bounded_lock = NULL, *now = NULL, *processor = NULL, *readable = NULL,
             *queued = NULL;
    bounded = PyObject_GetAttr(span, s_attributes);
    if (bounded == NULL) goto done;
    if ((PyObject *)Py_TYPE(bounded) != T_attributes_type) goto decline;
    stored = PyObject_GetAttr(bounded, s_t_dict);
    maxlen = stored == NULL ? NULL : PyObject_GetAttr(bounded, s_t_maxlen);
    max_value_len = maxlen == NULL ? NULL : PyObject_GetAttr(bounded, s_t_max_value_len);
    if (max_value_len == NULL) goto done;
    Py_ssize_t most = count_limit(maxlen);
    if (!PyDict_CheckExact(stored) || stored == attributes || max_value_len != Py_None || most < 0)
        goto decline; /* the span's own dict as the new attributes: the Python loop raises */

    if (lock_enter(span, &span_lock) < 0) goto done;
    /* live: started and not ended; anything else (and a full container) goes back to end_as */
    PyObject *started = PyObject_GetAttr(span, s_start_time);
    PyObject *ended = started == NULL ? NULL : PyObject_GetAttr(span, s_end_time);
    PyObject *immutable = ended == NULL ? NULL : PyObject_GetAttr(bounded, s_t_immutable);
    int live = immutable == NULL ? -1 : (started != Py_None && ended == Py_None && immutable == Py_False);
    Py_XDECREF(started);
    Py_XDECREF(ended);
    Py_XDECREF(immutable);
    if (live > 0 && PyDict_GET_SIZE(stored) + PyDict_GET_SIZE(attributes) > most)
        live = 0; /* the SDK's _set_items decides what is dropped */
    if (live <= 0) {
        if (lock_exit(&span_lock, live) < 0) goto done;
        goto decline;
    }
    int status = name != Py_None ? PyObject_SetAttr(span, s_name, name) : 0;
    if (status == 0) status = lock_enter(bounded, &bounded_lock);
    if (status == 0) {
        /* checked again under the container's lock (Python code ran since the first check), as
           _FastAttributes._set_items checks; what does not pass goes to that method */
        int fits = PyDict_GET_SIZE(stored) + PyDict_GET_SIZE(attributes) <= most && all_plain(attributes);
        if (fits && PyDict_GET_SIZE(stored) == 0) {
            status = PyDict_Update(stored, attributes);
        } else if (fits) {
            Py_ssize_t pos = 0, size = PyDict_GET_SIZE(attributes);
            PyObject *key, *value;
            while (status == 0) {
                /* a stored key's __eq__ (a str subclass) can run Python code: hold the entry, and refuse a
                   changed dict as the Python for-loop does */
                if (PyDict_GET_SIZE(attributes) != size) {
                    PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
                    status = -1;
                    break;
                }
                if (!PyDict_Next(attributes, &pos, &key, &value)) break;
                Py_INCREF(key);
                Py_INCREF(value);
                int there = PyDict_Contains(stored, key);
                if (there < 0 || (there && PyDict_DelItem(stored, key) < 0)) status = -1;
                if (status == 0) status = PyDict_SetItem(stored, key, value); /* moved to the end, as the SDK does */
                Py_DECREF(key);
                Py_DECREF(value);
            }
        }
        status = lock_exit(&bounded_lock, status);
        if (status == 0 && !fits) {
            PyObject *set = PyObject_CallMethodOneArg(bounded, s_t_set_items, attributes);
            status = set == NULL ? -1 : 0;
            Py_XDECREF(set);
        }
    }
    if (status == 0) {
        now = time_now_ns();
        status = now == NULL ? -1 : PyObject_SetAttr(span, s_end_time, now);
    }
    if (status == 0) status = PyObject_SetAttr(bounded, s_t_immutable, Py_True);
    if (lock_exit(&span_lock, status) < 0) goto done;

    /* Span.end's steps after its lock */
    PyObject *end_metrics = PyObject_GetAttr(span, s_t_record_end_metrics);
    if (end_metrics == NULL) goto done;
    int call_it = end_metrics == D_noop ? 0 : PyObject_IsTrue(end_metrics); /* the SDK's noop: nothing to call */
    PyObject *done_metrics = call_it <= 0 ? NULL : PyObject_CallNoArgs(end_metrics);
    Py_DECREF(end_metrics);
    if (call_it < 0 || (call_it && done_metrics == NULL)) goto done;
    Py_XDECREF(done_metrics);
    processor = PyObject_GetAttr(span, s_t_span_processor_field);
    if (processor == NULL) goto done;
    if (dispatch(processor, ON_ENDING, span, NULL) < 0) goto done;
    Py_SETREF(processor, PyObject_GetAttr(span, s_t_span_processor_field)); /* read again, as end_as does */
    if (processor == NULL) goto done;

    /* _FastSpan._readable_span() */
    PyObject *dropped = PyObject_GetAttr(bounded, s_t_dropped);
    if (dropped == NULL) goto done;
    int some_dropped = PyObject_IsTrue(dropped);
    Py_DECREF(dropped);
    if (some_dropped < 0) goto done;
    queued = some_dropped ? Py_NewRef(bounded) : PyDict_Copy(stored);
    if (queued == NULL) goto done;
    readable = PyBaseObject_Type.tp_new((PyTypeObject *)T_readable_type, T_empty_args, NULL);
    if (readable == NULL) goto done;
    PyObject *copied[] = {s_name, s_context, s_kind, s_t_info_field, s_t_instrumentation_scope, s_parent,
                          s_start_time, s_end_time};
    PyObject *rest[] = {s_events, s_links, s_t_resource_field, s_status};
    for (int i = 0; i < 13; i++) { /* _readable_span's fields in its order, the attributes queued */
        PyObject *field = i < 8 ? copied[i] : i == 8 ? s_attributes : rest[i - 9];
        PyObject *value = i == 8 ? Py_NewRef(queued) : PyObject_GetAttr(span, field);
        if (value == NULL) goto done;
        int set = PyObject_SetAttr(readable, field, value);
        Py_DECREF(value);
        if (set < 0) goto done;
    }
    if (only_owned_processors(processor)) untrack(readable);
    if (dispatch(processor, ON_END, readable, NULL) < 0) goto done;
    result = Py_NewRef(Py_True);
    goto done;
decline:
    result = Py_NewRef(Py_False);
done:
    Py_XDECREF(bounded);
    Py_XDECREF(stored);
    Py_XDECREF(maxlen);
    Py_XDECREF(max_value_len);
    Py_XDECREF(span_lock);
    Py_XDECREF(bounded_lock);
    Py_XDECREF(now);
    Py_XDECREF(processor);
    Py_XDECREF(readable);
    Py_XDECREF(queued);
    return result;
}

/* --- logs: a plain record into the export queue ------------------------------------------ */

/* _enqueue(owner._batch_processor, item), inline below the three-quarter mark (appendleft, then the
   export thread's wake-up once a batch is queued); near or at the mark, shut down or full, _fastsdk's
   `_enqueue` itself. 0, or -1 with an exception set. */
static int enqueue_item(PyObject *owner, PyObject *item) {
    int status = -1;
    PyObject *batch = NULL, *queue = NULL, *most_queued = NULL, *shutdown = NULL, *awaken = NULL;
    batch = PyObject_GetAttr(owner, s_l_batch);
    queue = batch == NULL ? NULL : PyObject_GetAttr(batch, s_l_queue);
    most_queued = queue == NULL ? NULL : PyObject_GetAttr(batch, s_l_max_queue);
    shutdown = most_queued == NULL ? NULL : PyObject_GetAttr(batch, s_l_shutdown);
    if (shutdown == NULL) goto done;
    Py_ssize_t size = PyObject_Length(queue);
    if (size < 0) goto done;
    Py_ssize_t limit = PyLong_Check(most_queued) ? PyLong_AsSsize_t(most_queued) : -1;
    if (limit == -1 && PyErr_Occurred()) PyErr_Clear();
    if (shutdown != Py_False || limit < 0 || size >= limit - (limit >> 2)) {
        PyObject *enqueue = from_namespace(s_n_enqueue);
        PyObject *call[] = {batch, item};
        PyObject *queued = enqueue == NULL ? NULL : PyObject_Vectorcall(enqueue, call, 2, NULL);
        Py_XDECREF(enqueue);
        if (queued == NULL) goto done;
        Py_DECREF(queued);
        status = 0;
        goto done;
    }
    PyObject *appended = PyObject_CallMethodOneArg(queue, s_l_appendleft, item);
    if (appended == NULL) goto done;
    Py_DECREF(appended);
    awaken = PyObject_GetAttr(batch, s_l_awaken);
    if (awaken == NULL) goto done;
    PyObject *batch_size = PyObject_GetAttr(batch, s_l_max_batch);
    if (batch_size == NULL) goto done;
    size = PyObject_Length(queue);
    PyObject *queued_now = size < 0 ? NULL : PyLong_FromSsize_t(size);
    int full = queued_now == NULL ? -1 : PyObject_RichCompareBool(queued_now, batch_size, Py_GE);
    Py_XDECREF(queued_now);
    Py_DECREF(batch_size);
    if (full < 0) goto done;
    if (full) { /* `not awaken._flag`: Event.is_set() reads the flag */
        PyObject *flag = PyObject_GetAttr(awaken, s_l_flag);
        int set = flag == NULL ? -1 : PyObject_IsTrue(flag);
        Py_XDECREF(flag);
        if (set < 0) goto done;
        if (!set) {
            PyObject *woken = PyObject_CallMethodNoArgs(awaken, s_l_set);
            if (woken == NULL) goto done;
            Py_DECREF(woken);
        }
    }
    status = 0;
done:
    Py_XDECREF(batch);
    Py_XDECREF(queue);
    Py_XDECREF(most_queued);
    Py_XDECREF(shutdown);
    Py_XDECREF(awaken);
    return status;
}

/*
 * emit_log() is FastBatchLogRecordProcessor.emit_plain, for a logger whose only processor is
 * that one (sole_log_processor), with its _enqueue inline below the queue's three-quarter mark:
 * the same checks (no value-length limit, attributes within the count limit and plain), the
 * logger's enabled check (a disabled logger answers True, emitting nothing), the current
 * span's ids, the logger metrics' emit_log, the QueuedLogRecord tuple, then appendleft and the
 * export thread's wake-up as _enqueue does. Near or at the mark, shut down, or full, it calls
 * _fastsdk._enqueue. It answers False, before doing anything, whenever the Python code must
 * decide. tests/test_fastsdk.py compares the records of both paths.
 */
static PyObject *emit_log(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "emit_log(logger, timestamp, severity_number, severity_text, body, attributes, context, plain)");
        return NULL;
    }
    PyObject *logger = args[0], *attributes = args[5], *context = args[6], *plain = args[7];
    if (L_processor_type == NULL || M_namespace == NULL || !PyDict_CheckExact(attributes)) Py_RETURN_FALSE;
    PyObject *result = NULL, *multi = NULL, *processors = NULL, *limits = NULL, *maxlen = NULL, *max_value_len = NULL,
             *enabled = NULL, *span = NULL, *span_context = NULL, *metrics = NULL, *now = NULL, *item = NULL,
             *trace_id = NULL, *span_id = NULL, *trace_flags = NULL;
    /* sole_log_processor(logger) */
    multi = PyObject_GetAttr(logger, s_l_multi);
    if (multi == NULL) goto done;
    processors = PyObject_GetAttr(multi, s_l_processors);
    if (processors == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) goto done;
        PyErr_Clear();
        goto decline;
    }
    if (!PyTuple_CheckExact(processors) || PyTuple_GET_SIZE(processors) != 1 ||
        (PyObject *)Py_TYPE(PyTuple_GET_ITEM(processors, 0)) != L_processor_type)
        goto decline;
    PyObject *sole = PyTuple_GET_ITEM(processors, 0); /* held by `processors` */
    /* emit_plain's checks */
    limits = PyObject_GetAttr(logger, s_l_limits);
    if (limits == NULL) goto done;
    maxlen = PyObject_GetAttr(limits, s_l_max_attributes);
    if (maxlen == NULL) goto done;
    max_value_len = PyObject_GetAttr(limits, s_l_max_attribute_length);
    if (max_value_len == NULL) goto done;
    Py_ssize_t most = count_limit(maxlen);
    if (max_value_len != Py_None || most < 0 || PyDict_GET_SIZE(attributes) > most) goto decline;
    if (plain != Py_True && !all_plain(attributes)) goto decline;
    enabled = PyObject_CallMethodNoArgs(logger, s_l_is_enabled);
    if (enabled == NULL) goto done;
    int on = PyObject_IsTrue(enabled);
    if (on < 0) goto done;
    if (!on) { /* a disabled logger emits nothing, as in Logger.emit */
        result = Py_NewRef(Py_True);
        goto done;
    }
    span = span_of(context);
    if (span == NULL) goto done;
    span_context = span_context_of(span);
    if (span_context == NULL) goto done;
    /* an exact SpanContext's fields, any other span context's properties, read as emit_plain reads them:
       declining here would run _is_enabled() and the span lookup a second time on the Python path */
    trace_id = span_context_field(span_context, 0, s_trace_id);
    if (trace_id == NULL) goto done;
    span_id = span_context_field(span_context, 1, s_span_id);
    if (span_id == NULL) goto done;
    trace_flags = span_context_field(span_context, 3, s_trace_flags);
    if (trace_flags == NULL) goto done;
    metrics = PyObject_GetAttr(logger, s_l_metrics);
    if (metrics == NULL) goto done;
    PyObject *emitted = PyObject_CallMethodNoArgs(metrics, s_l_emit_log);
    if (emitted == NULL) goto done;
    Py_DECREF(emitted);
    now = time_now_ns();
    if (now == NULL) goto done;
    item = ((PyTypeObject *)L_queued_type)->tp_alloc((PyTypeObject *)L_queued_type, 10);
    if (item == NULL) goto done;
    PyObject *fields[] = {args[1],
                          now,
                          trace_id,
                          span_id,
                          trace_flags,
                          args[3],
                          args[2],
                          args[4],
                          attributes,
                          logger};
    for (int i = 0; i < 10; i++) PyTuple_SET_ITEM(item, i, Py_NewRef(fields[i]));
    if (PyUnicode_CheckExact(args[4])) untrack(item); /* a str body: no cycle but the logger's (untrack()) */
    if (enqueue_item(sole, item) < 0) goto done;
    result = Py_NewRef(Py_True);
    goto done;
decline:
    result = Py_NewRef(Py_False);
done:
    Py_XDECREF(multi);
    Py_XDECREF(processors);
    Py_XDECREF(limits);
    Py_XDECREF(maxlen);
    Py_XDECREF(max_value_len);
    Py_XDECREF(enabled);
    Py_XDECREF(span);
    Py_XDECREF(span_context);
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(trace_flags);
    Py_XDECREF(metrics);
    Py_XDECREF(now);
    Py_XDECREF(item);
    return result;
}

static PyObject *configure_logs(PyObject *self, PyObject *args) {
    PyObject *processor_type, *queued_type;
    if (!PyArg_ParseTuple(args, "O!O!:configure_logs", &PyType_Type, &processor_type, &PyType_Type, &queued_type))
        return NULL;
    if (M_namespace == NULL || !PyType_IsSubtype((PyTypeObject *)queued_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "configure_logs: configure_metrics first; the queued record is a tuple type");
        return NULL;
    }
    Py_XSETREF(L_processor_type, Py_NewRef(processor_type));
    Py_XSETREF(L_queued_type, Py_NewRef(queued_type));
    Py_RETURN_NONE;
}

static PyObject *configure_spans(PyObject *self, PyObject *args) {
    PyObject *given[15];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOO!OOO:configure_spans", &given[0], &given[1], &given[2], &given[3],
                          &given[4], &given[5], &given[6], &given[7], &given[8], &given[9], &given[10],
                          &PyDict_Type, &given[11], &given[12], &given[13], &given[14]))
        return NULL;
    if (M_namespace == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_spans: configure_metrics first (it sets the shared types)");
        return NULL;
    }
    int types[] = {0, 1, 2, 3, 14};
    for (int i = 0; i < 5; i++) {
        if (!PyType_Check(given[types[i]])) {
            PyErr_Format(PyExc_TypeError, "configure_spans: argument %d must be a type", types[i] + 1);
            return NULL;
        }
    }
    if (!PyLong_Check(given[12]) || !PyLong_Check(given[13]) || !PyCallable_Check(given[10])) {
        PyErr_SetString(PyExc_TypeError, "configure_spans: the id maxima are ints and the lock factory a callable");
        return NULL;
    }
    PyObject *empty = PyTuple_New(0);
    PyObject *kw = Py_BuildValue("(s)", "parent_context");
    if (empty == NULL || kw == NULL) {
        Py_XDECREF(empty);
        Py_XDECREF(kw);
        return NULL;
    }
    /* in argument order: tracer, span, attributes, random ids, default sampler, RECORD_AND_SAMPLE, sampled
       flags without and with the random bit, default trace state, the unset status, lock factory, the SDK
       module's namespace, id maxima, ReadableSpan */
    PyObject **slots[] = {&T_tracer_type,  &T_span_type,    &T_attributes_type, &T_random_ids_type, &T_default_on,
                          &T_record_and_sample, &T_flags[0], &T_flags[1],        &T_trace_state,     &T_unset_status,
                          &T_lock_factory, &T_sdk_namespace, &T_max_trace_id,    &T_max_span_id, &T_readable_type};
    for (int i = 0; i < 15; i++) Py_XSETREF(*slots[i], Py_NewRef(given[i]));
    Py_XSETREF(T_empty_args, empty);
    Py_XSETREF(T_parent_context_kw, kw);
    Py_RETURN_NONE;
}

static PyObject *configure_sampling(PyObject *self, PyObject *args) {
    enum { COUNT = 10 };
    PyObject *given[COUNT];
    if (!PyArg_ParseTuple(args, "O!OO!OO!OOOOO!:configure_sampling", &PyTuple_Type, &given[0], &given[1],
                          &PyType_Type, &given[2], &given[3], &PyTuple_Type, &given[4], &given[5], &given[6],
                          &given[7], &given[8], &PyType_Type, &given[9]))
        return NULL;
    if (T_tracer_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_sampling: configure_spans first (it sets RECORD_AND_SAMPLE)");
        return NULL;
    }
    for (int t = 0; t <= 4; t += 4)
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(given[t]); i++)
            if (!PyType_Check(PyTuple_GET_ITEM(given[t], i))) {
                PyErr_SetString(PyExc_TypeError, "configure_sampling: the sampler type tuples hold types");
                return NULL;
            }
    /* in argument order: ParentBased types and their should_sample, TraceIdRatioBased and its should_sample,
       the static sampler types and their should_sample, Decision.DROP, the unsampled flags without and with
       the random bit, NonRecordingSpan */
    PyObject **slots[] = {&S_parent_based_types, &S_parent_based_should_sample, &S_ratio_type,
                          &S_ratio_should_sample, &S_static_types,              &S_static_should_sample,
                          &S_drop,                &S_unsampled_flags[0],         &S_unsampled_flags[1],
                          &S_non_recording_type};
    for (int i = 0; i < COUNT; i++) Py_XSETREF(*slots[i], Py_NewRef(given[i]));
    Py_RETURN_NONE;
}

/* --- loguru: a plain record to the log export --------------------------------------------- */

/*
 * loguru_record(record, emitter) is _logs._loguru_sink and _Emitter.emit for the usual loguru
 * record: no extra fields (the console prefix already taken out), no exception, a logger for
 * its scope already made (the emitter's cache), a level whose severity is known (_logs'
 * _SEVERITY_BY_LEVEL) and loguru's clock start already converted (_LOGURU_START_NS). It
 * builds the same attributes in the same order (the code location, then the current
 * context's business keys), the timestamp from the record's `elapsed` with integer
 * arithmetic as _loguru_time_ns does, sets the emitter's per-thread busy flag around the
 * hand-off as emit does, and hands the record to emit_log(). It answers False, having done
 * nothing, whenever the Python functions must decide (emit_log declining included); True
 * when the record was exported, or dropped because this thread is already exporting one.
 * tests/test_logs.py compares the exported records of both paths.
 */
static PyObject *G_keys_key, *G_severities, *G_start_ns;
static PyObject *s_g_extra, *s_g_exception, *s_g_function, *s_g_file, *s_g_path, *s_g_line, *s_g_name, *s_g_level,
    *s_g_no, *s_g_message, *s_g_elapsed, *s_g_loggers, *s_g_local, *s_g_busy, *s_g_loguru, *s_g_code_function,
    *s_g_code_file, *s_g_code_line;

static PyObject *loguru_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "loguru_record(record, emitter)");
        return NULL;
    }
    PyObject *record = args[0], *emitter = args[1];
    if (G_keys_key == NULL || L_processor_type == NULL || M_namespace == NULL || !PyDict_CheckExact(record))
        Py_RETURN_FALSE;
    /* the record's fields, held (Python code runs below: a property, a method, the hand-off) */
    PyObject *keys_of_record[] = {s_g_extra, s_g_exception, s_g_function, s_g_file, s_g_line,
                                  s_g_name,  s_g_level,     s_g_message,  s_g_elapsed};
    PyObject *got[9] = {NULL};
    for (int i = 0; i < 9; i++) {
        got[i] = PyDict_GetItemWithError(record, keys_of_record[i]);
        if (got[i] == NULL) {
            for (int j = 0; j < i; j++) Py_DECREF(got[j]);
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_FALSE; /* a record without the field: Python decides */
        }
        Py_INCREF(got[i]);
    }
    PyObject *extra = got[0], *exception = got[1], *function = got[2], *file = got[3], *line = got[4],
             *name = got[5], *level = got[6], *message = got[7], *elapsed = got[8];
    PyObject *result = NULL, *path = NULL, *level_no = NULL, *severity = NULL, *loggers = NULL, *cached = NULL,
             *local = NULL, *busy = NULL, *attributes = NULL, *timestamp = NULL, *ctx = NULL, *emitted = NULL;
    /* anything unusual declines; so does an elapsed time the nanosecond arithmetic below cannot hold */
    if (!PyDict_CheckExact(extra) || PyDict_GET_SIZE(extra) != 0 || exception != Py_None ||
        !PyDelta_CheckExact(elapsed) || PyDateTime_DELTA_GET_DAYS(elapsed) > 100000 ||
        PyDateTime_DELTA_GET_DAYS(elapsed) < -100000 || !PyUnicode_CheckExact(function) || !PyLong_CheckExact(line) ||
        !(name == Py_None || PyUnicode_CheckExact(name)) || PyList_GET_SIZE(G_start_ns) < 1)
        goto decline;
    path = PyObject_GetAttr(file, s_g_path);
    if (path == NULL) goto done;
    level_no = PyObject_GetAttr(level, s_g_no);
    if (level_no == NULL) goto done;
    severity = PyDict_GetItemWithError(G_severities, level_no); /* (number, text), once severity() made it */
    if (severity == NULL && PyErr_Occurred()) goto done;
    Py_XINCREF(severity);
    PyObject *scope = name != Py_None && PyUnicode_GET_LENGTH(name) > 0 ? name : s_g_loguru;
    loggers = PyObject_GetAttr(emitter, s_g_loggers);
    if (loggers == NULL) goto done;
    cached = PyDict_CheckExact(loggers) ? PyDict_GetItemWithError(loggers, scope) : NULL;
    if (cached == NULL && PyErr_Occurred()) goto done;
    Py_XINCREF(cached);
    if (!PyUnicode_CheckExact(path) || severity == NULL || !PyTuple_CheckExact(severity) ||
        PyTuple_GET_SIZE(severity) != 2 || cached == NULL || !PyTuple_CheckExact(cached) ||
        PyTuple_GET_SIZE(cached) != 2 || PyTuple_GET_ITEM(cached, 1) != Py_True)
        goto decline; /* emit makes the logger (or it is not an SDK logger), severity() the level's pair */
    ctx = PyObject_CallNoArgs(M_get_current);
    if (ctx == NULL) goto done;
    if ((PyObject *)Py_TYPE(ctx) != M_context_type) goto decline; /* a subclass's own get() is for Python */
    local = PyObject_GetAttr(emitter, s_g_local);
    if (local == NULL) goto done;
    int found = get(local, s_g_busy, &busy); /* not set yet on this thread: not busy */
    if (found == FAIL) goto done;
    if (found == DECLINE) busy = Py_NewRef(Py_False);
    int is_busy = PyObject_IsTrue(busy);
    if (is_busy < 0) goto done;
    if (is_busy) { /* a log line logged while this thread exports one: dropped, as emit drops it */
        result = Py_NewRef(Py_True);
        goto done;
    }
    /* _loguru_time_ns(record): loguru's clock start plus the record's elapsed, in integer nanoseconds */
    long long elapsed_ns = ((long long)PyDateTime_DELTA_GET_DAYS(elapsed) * 86400LL +
                            PyDateTime_DELTA_GET_SECONDS(elapsed)) * 1000000000LL +
                           (long long)PyDateTime_DELTA_GET_MICROSECONDS(elapsed) * 1000LL;
    PyObject *offset = PyLong_FromLongLong(elapsed_ns);
    timestamp = offset == NULL ? NULL : PyNumber_Add(PyList_GET_ITEM(G_start_ns, 0), offset);
    Py_XDECREF(offset);
    if (timestamp == NULL) goto done;
    /* _loguru_sink's attributes, then emit's: the current context's business keys */
    attributes = PyDict_New();
    if (attributes == NULL || PyDict_SetItem(attributes, s_g_code_function, function) < 0 ||
        PyDict_SetItem(attributes, s_g_code_file, path) < 0 || PyDict_SetItem(attributes, s_g_code_line, line) < 0)
        goto done;
    PyObject *keys = PyDict_GetItemWithError(ctx, G_keys_key);
    if (keys == NULL && PyErr_Occurred()) goto done;
    if (keys != NULL && keys != Py_None && PyDict_Update(attributes, keys) < 0) goto done;
    /* the hand-off, with this thread's busy flag set around it, reset whatever happened */
    if (PyObject_SetAttr(local, s_g_busy, Py_True) < 0) goto done;
    PyObject *call[] = {PyTuple_GET_ITEM(cached, 0), timestamp, PyTuple_GET_ITEM(severity, 0),
                        PyTuple_GET_ITEM(severity, 1), message, attributes, ctx, Py_True};
    emitted = emit_log(NULL, call, 8);
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    int reset = PyObject_SetAttr(local, s_g_busy, Py_False);
    if (type != NULL) {
        if (reset < 0) PyErr_Clear(); /* the first error is the one raised */
        PyErr_Restore(type, value, traceback);
    }
    if (emitted == NULL || reset < 0) goto done;
    result = Py_NewRef(emitted); /* False: emit_log declined before doing anything; Python decides */
    goto done;
decline:
    result = Py_NewRef(Py_False);
done:
    Py_XDECREF(path);
    Py_XDECREF(level_no);
    Py_XDECREF(severity);
    Py_XDECREF(loggers);
    Py_XDECREF(cached);
    Py_XDECREF(ctx);
    Py_XDECREF(local);
    Py_XDECREF(busy);
    Py_XDECREF(attributes);
    Py_XDECREF(timestamp);
    Py_XDECREF(emitted);
    for (int i = 0; i < 9; i++) Py_DECREF(got[i]);
    return result;
}

static PyObject *configure_loguru(PyObject *self, PyObject *args) {
    PyObject *keys_key, *severities, *start_ns;
    if (!PyArg_ParseTuple(args, "OO!O!:configure_loguru", &keys_key, &PyDict_Type, &severities, &PyList_Type,
                          &start_ns))
        return NULL;
    if (L_processor_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_loguru: configure_logs first");
        return NULL;
    }
    Py_XSETREF(G_keys_key, Py_NewRef(keys_key));
    Py_XSETREF(G_severities, Py_NewRef(severities));
    Py_XSETREF(G_start_ns, Py_NewRef(start_ns));
    Py_RETURN_NONE;
}

/* --- HTTP servers: a request's attributes ------------------------------------------------ */

/*
 * request_attributes() is _asgi_server.request_attributes for the usual input (exact str
 * fields, a dict of str headers, (host, port) tuples or None): the metric attributes and the
 * server span's start attributes, in the same order. Any other input answers None and the
 * Python function decides; tests/test_asgi_server.py compares both on random requests.
 */
static PyObject *s_h_method, *s_h_scheme, *s_h_version, *s_h_path, *s_h_query, *s_h_original, *s_h_address,
    *s_h_port, *s_h_client_address, *s_h_client_port, *s_h_agent, *s_h_host, *s_h_user_agent, *s_h_other;

/* str.isdigit(): not empty, and every character a digit. */
static int all_digits(PyObject *text) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n == 0) return 0;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!Py_UNICODE_ISDIGIT(PyUnicode_READ(kind, data, i))) return 0;
    return 1;
}

/* An exact str header value, or NULL (absent; a new reference: the next lookup can run a key's __eq__);
   1 when it is there but not an exact str. */
static int header_of(PyObject *headers, PyObject *name, PyObject **value) {
    *value = PyDict_GetItemWithError(headers, name);
    if (*value == NULL) return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(*value);
    return PyUnicode_CheckExact(*value) ? 0 : 1;
}

static int pair_ok(PyObject *pair) { return pair == Py_None || (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2); }

static PyObject *request_attributes(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "request_attributes(raw_method, scheme, path, query, version, headers, client, server, known)");
        return NULL;
    }
    PyObject *raw = args[0], *scheme = args[1], *path = args[2], *query = args[3], *version = args[4],
             *headers = args[5], *client = args[6], *server = args[7], *known = args[8];
    if (!PyUnicode_CheckExact(raw) || !PyUnicode_CheckExact(scheme) || !PyUnicode_CheckExact(path) ||
        !PyUnicode_CheckExact(query) || !(version == Py_None || PyUnicode_CheckExact(version)) ||
        !PyDict_CheckExact(headers) || !pair_ok(client) || !pair_ok(server) || !PyFrozenSet_CheckExact(known))
        Py_RETURN_NONE;
    PyObject *host, *agent;
    int odd = header_of(headers, s_h_host, &host);
    if (odd < 0) return NULL;
    int odd_agent = header_of(headers, s_h_user_agent, &agent);
    if (odd_agent < 0 || odd || odd_agent) {
        Py_XDECREF(host);
        Py_XDECREF(agent);
        if (odd_agent < 0) return NULL;
        Py_RETURN_NONE;
    }

    PyObject *result = NULL, *attributes = NULL, *span = NULL, *address = NULL, *port = NULL;
    int is_known = PySet_Contains(known, raw);
    if (is_known < 0) goto done;
    PyObject *method = is_known ? raw : s_h_other;
    attributes = PyDict_New();
    if (attributes == NULL || PyDict_SetItem(attributes, s_h_method, method) < 0 ||
        PyDict_SetItem(attributes, s_h_scheme, scheme) < 0)
        goto done;
    if (version != Py_None && PyUnicode_GET_LENGTH(version) > 0 &&
        PyDict_SetItem(attributes, s_h_version, version) < 0)
        goto done;
    span = PyDict_Copy(attributes);
    if (span == NULL || PyDict_SetItem(span, s_h_path, path) < 0) goto done;
    if (PyUnicode_GET_LENGTH(query) > 0 && PyDict_SetItem(span, s_h_query, query) < 0) goto done;
    if (!is_known) {
        int differs = PyObject_RichCompareBool(method, raw, Py_NE);
        if (differs < 0 || (differs && PyDict_SetItem(span, s_h_original, raw) < 0)) goto done;
    }
    if (host != NULL && PyUnicode_GET_LENGTH(host) > 0) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(host);
        Py_ssize_t colon = PyUnicode_FindChar(host, ':', 0, n, -1); /* host.rpartition(":") */
        if (colon == -2) goto done;
        address = colon < 0 ? PyUnicode_New(0, 0) : PyUnicode_Substring(host, 0, colon);
        port = colon < 0 ? Py_NewRef(host) : PyUnicode_Substring(host, colon + 1, n);
        if (address == NULL || port == NULL) goto done;
        if (!all_digits(port)) { /* no port: the whole header is the address */
            Py_SETREF(address, Py_NewRef(host));
            Py_SETREF(port, PyUnicode_New(0, 0));
            if (port == NULL) goto done;
        }
        if (PyDict_SetItem(span, s_h_address, address) < 0) goto done;
        if (PyUnicode_GET_LENGTH(port) > 0) {
            PyObject *number = PyLong_FromUnicodeObject(port, 10); /* int(port): ValueError as int() raises it */
            if (number == NULL) goto done;
            int status = PyDict_SetItem(span, s_h_port, number);
            Py_DECREF(number);
            if (status < 0) goto done;
        }
    } else if (server != Py_None) {
        if (PyDict_SetItem(span, s_h_address, PyTuple_GET_ITEM(server, 0)) < 0 ||
            PyDict_SetItem(span, s_h_port, PyTuple_GET_ITEM(server, 1)) < 0)
            goto done;
    }
    if (client != Py_None) {
        if (PyDict_SetItem(span, s_h_client_address, PyTuple_GET_ITEM(client, 0)) < 0) goto done;
        PyObject *client_port = PyTuple_GET_ITEM(client, 1);
        if (client_port != Py_None && PyDict_SetItem(span, s_h_client_port, client_port) < 0) goto done;
    }
    if (agent != NULL && PyUnicode_GET_LENGTH(agent) > 0 && PyDict_SetItem(span, s_h_agent, agent) < 0) goto done;
    result = PyTuple_Pack(3, method, attributes, span);
done:
    Py_XDECREF(host);
    Py_XDECREF(agent);
    Py_XDECREF(attributes);
    Py_XDECREF(span);
    Py_XDECREF(address);
    Py_XDECREF(port);
    return result;
}

/*
 * start_request() is _asgi_server._RequestState.__init__ for the usual request, in one call
 * instead of some fifteen Python frames (the state, its attributes, the parent context, the
 * requestId, the span, the request's context, the in-flight count). It runs the same steps
 * in the same order and calls the same Python code wherever that code is not the one it was
 * configured with (a test's patched function, the ablation's switch), wherever the input is
 * unusual (inbound baggage, a header that is not a valid requestId, a parent context of
 * another type) and wherever its C counterpart declines (the span's start). It answers
 * False, having done nothing, when the instruments are not loaded yet, when body sizes are
 * on or when request_attributes() declines: __init__ then runs its Python steps.
 * tests/test_asgi_server.py compares the states both make.
 */
static PyObject *R_state_type, *R_asgi, *R_web, *R_context, *R_fastsdk, *R_propagate, *R_trace, *R_request_keys,
    *R_with_keys, *R_new_request_id, *R_validate_value, *R_promote_inbound, *R_native_attributes,
    *R_native_start, *R_active_started, *R_server_kind, *R_keys_key, *R_baggage_key, *R_request_id_key, *R_hex,
    *R_kw_getter, *R_kw_start, *R_http, *R_128;
static PyObject *s_r_start, *s_r_instruments, *s_r_method, *s_r_attributes, *s_r_active_key, *s_r_span,
    *s_r_header, *s_r_keys_owned, *s_r_ctx, *s_r_status, *s_r_response_size, *s_r_error, *s_r_route_keys,
    *s_r_tracer, *s_r_body_sizes, *s_r_active, *s_r_series, *s_r_started, *s_r_getter, *s_r_known,
    *s_r_propagation, *s_r_names, *s_r_isdisjoint, *s_r_config, *s_r_max_length, *s_r_perf_counter,
    *s_r_random, *s_r_getrandbits, *s_r_extract, *s_r_set_span_in_context, *s_r_request_keys, *s_r_with_keys,
    *s_r_new_request_id, *s_r_validate_value, *s_r_promote_inbound, *s_r_native_attributes, *s_r_native_start,
    *s_r_time, *s_r_update;

/* 1 when the module global is still `original`, 0 when something replaced it, -1 on error. */
static int global_is(PyObject *namespace, PyObject *name, PyObject *original) {
    PyObject *found = PyDict_GetItemWithError(namespace, name);
    if (found == NULL) return PyErr_Occurred() ? -1 : 0;
    return found == original;
}

/* Python's `except Exception`: an Exception is cleared (1), anything else stays raised (0). */
static int swallowed(void) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return 0;
    PyErr_Clear();
    return 1;
}

/* _context.validate_value for an exact str: 1 valid, 0 not (checked the way the pattern and the length
   limit check it). */
static int valid_key_value(PyObject *value, Py_ssize_t most) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (n == 0 || n > most || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) return 0;
    const Py_UCS1 *data = PyUnicode_1BYTE_DATA(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS1 c = data[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

/* _web.request_keys(request_id, parent): in C for a parent without baggage and a requestId that is
   absent or valid; the Python function otherwise (it counts what it rejects). A new reference. */
static PyObject *request_keys_of(PyObject *request_id, PyObject *parent) {
    PyObject *call_args[] = {request_id, parent};
    int own = global_is(R_web, s_r_request_keys, R_request_keys);
    if (own < 0) return NULL;
    if (!own) {
        PyObject *replaced = global_of(R_web, s_r_request_keys);
        if (replaced == NULL) return NULL;
        PyObject *keys = PyObject_Vectorcall(replaced, call_args, 2, NULL);
        Py_DECREF(replaced);
        return keys;
    }
    int valid_own = global_is(R_context, s_r_validate_value, R_validate_value);
    int new_own = valid_own <= 0 ? valid_own : global_is(R_context, s_r_new_request_id, R_new_request_id);
    if (new_own > 0) new_own = global_is(R_context, s_r_promote_inbound, R_promote_inbound);
    if (new_own < 0) return NULL;
    int usual = new_own && (PyObject *)Py_TYPE(parent) == M_context_type &&
                (request_id == Py_None || PyUnicode_CheckExact(request_id));
    if (usual) {
        PyObject *entries = PyDict_GetItemWithError(parent, R_baggage_key);
        if (entries == NULL && PyErr_Occurred()) return NULL;
        if (entries != NULL) {
            Py_INCREF(entries); /* its truth may run Python code */
            int truth = PyObject_IsTrue(entries);
            Py_DECREF(entries);
            if (truth < 0) return NULL;
            usual = !truth; /* inbound baggage: promote_inbound decides */
        }
    }
    if (usual && request_id != Py_None) {
        PyObject *config = global_of(R_context, s_r_config);
        if (config == NULL) return NULL;
        PyObject *limit = PyObject_GetAttr(config, s_r_max_length);
        Py_DECREF(config);
        if (limit == NULL) return NULL;
        Py_ssize_t most = PyLong_CheckExact(limit) ? PyLong_AsSsize_t(limit) : -1;
        Py_DECREF(limit);
        if (most == -1 && PyErr_Occurred()) PyErr_Clear();
        usual = most >= 0 && valid_key_value(request_id, most); /* a rejected header is counted by Python */
    }
    if (!usual) return PyObject_Vectorcall(R_request_keys, call_args, 2, NULL);

    PyObject *value;
    if (request_id != Py_None) {
        value = Py_NewRef(request_id);
    } else { /* new_request_id(): f"{random.getrandbits(128):032x}" */
        PyObject *random = global_of(R_context, s_r_random);
        if (random == NULL) return NULL;
        PyObject *draw = PyObject_GetAttr(random, s_r_getrandbits);
        Py_DECREF(random);
        if (draw == NULL) return NULL;
        PyObject *bits = PyObject_CallOneArg(draw, R_128);
        Py_DECREF(draw);
        if (bits == NULL) return NULL;
        value = PyObject_Format(bits, R_hex);
        Py_DECREF(bits);
        if (value == NULL) return NULL;
    }
    PyObject *keys = PyDict_New();
    if (keys == NULL || PyDict_SetItem(keys, R_request_id_key, value) < 0) Py_CLEAR(keys);
    Py_DECREF(value);
    return keys;
}

/* A copy of ctx[key] as a plain dict (`dict(known) if known else {}`) with the updates, a new reference. */
static PyObject *merged_with(PyObject *ctx, PyObject *key, PyObject *updates) {
    PyObject *known = PyDict_GetItemWithError(ctx, key);
    if (known == NULL && PyErr_Occurred()) return NULL;
    PyObject *merged = PyDict_New();
    if (merged == NULL) return NULL;
    if (known != NULL) {
        Py_INCREF(known);
        int truth = PyObject_IsTrue(known);
        int status = truth <= 0 ? truth : PyDict_Merge(merged, known, 1);
        Py_DECREF(known);
        if (status < 0) {
            Py_DECREF(merged);
            return NULL;
        }
    }
    if (PyDict_Update(merged, updates) < 0) Py_CLEAR(merged);
    return merged;
}

/* _context.with_keys(keys, parent, span): in C for an exact Context, the Python function otherwise. */
static PyObject *context_with_keys(PyObject *keys, PyObject *parent, PyObject *span) {
    int own = global_is(R_context, s_r_with_keys, R_with_keys);
    if (own < 0) return NULL;
    if (!own || (PyObject *)Py_TYPE(parent) != M_context_type || !PyDict_CheckExact(keys)) {
        PyObject *with_keys = global_of(R_context, s_r_with_keys);
        if (with_keys == NULL) return NULL;
        PyObject *call_args[] = {keys, parent, span};
        PyObject *ctx = PyObject_Vectorcall(with_keys, call_args, 3, NULL);
        Py_DECREF(with_keys);
        return ctx;
    }
    PyObject *merged = merged_with(parent, R_keys_key, keys);
    if (merged == NULL) return NULL;
    PyObject *entries = merged_with(parent, R_baggage_key, keys);
    if (entries == NULL) {
        Py_DECREF(merged);
        return NULL;
    }
    /* Context(values) with values = dict(parent) and the three set: the same items, one copy less */
    PyObject *ctx = PyObject_CallNoArgs(M_context_type);
    if (ctx == NULL || PyDict_Merge(ctx, parent, 1) < 0 || PyDict_SetItem(ctx, R_keys_key, merged) < 0 ||
        PyDict_SetItem(ctx, R_baggage_key, entries) < 0 || PyDict_SetItem(ctx, M_span_key, span) < 0)
        Py_CLEAR(ctx);
    Py_DECREF(merged);
    Py_DECREF(entries);
    return ctx;
}

/* ACTIVE_REQUESTS.started(key): next() on the series' started count when the method is
   _ActiveRequests.started and the series exists; else the method itself (which makes a new series
   under its lock, or is whatever replaced it). */
static int count_started(PyObject *key) {
    PyObject *active = global_of(R_asgi, s_r_active);
    if (active == NULL) return -1;
    PyObject *method = PyObject_GetAttr(active, s_r_started);
    if (method == NULL) {
        Py_DECREF(active);
        return -1;
    }
    PyObject *series = NULL, *count = NULL;
    if (PyMethod_Check(method) && PyMethod_GET_FUNCTION(method) == R_active_started &&
        PyMethod_GET_SELF(method) == active) {
        series = PyObject_GetAttr(active, s_r_series);
        PyObject *pair = series != NULL && PyDict_CheckExact(series) ? PyDict_GetItemWithError(series, key) : NULL;
        if (pair != NULL && PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2 &&
            Py_TYPE(PyTuple_GET_ITEM(pair, 0))->tp_iternext != NULL) {
            PyObject *started = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
            count = Py_TYPE(started)->tp_iternext(started);
            Py_DECREF(started);
            if (count == NULL && !PyErr_Occurred()) PyErr_SetNone(PyExc_StopIteration); /* as next() raises */
            Py_XDECREF(series);
            Py_DECREF(method);
            Py_DECREF(active);
            if (count == NULL) return -1;
            Py_DECREF(count);
            return 0;
        }
        PyErr_Clear(); /* a new or odd series: the method decides (and raises what it raises) */
    }
    Py_XDECREF(series);
    PyObject *done = PyObject_CallOneArg(method, key);
    Py_DECREF(method);
    Py_DECREF(active);
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
}

static PyObject *start_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "start_request(state, instruments, header_name, raw_method, scheme, path, query, version, "
                        "headers, request_id, client, server)");
        return NULL;
    }
    PyObject *state = args[0], *instruments = args[1], *header_name = args[2], *scheme = args[4],
             *headers = args[8], *request_id = args[9];
    if (R_state_type == NULL || M_context_type == NULL || T_empty_args == NULL || R_kw_start == NULL || (PyObject *)Py_TYPE(state) != R_state_type ||
        !PyDict_CheckExact(headers))
        Py_RETURN_FALSE;
    PyObject *result = NULL, *clock = NULL, *start = NULL, *tracer = NULL, *known = NULL, *made = NULL,
             *active_key = NULL, *parent = NULL, *keys = NULL, *span = NULL, *pair = NULL, *ctx = NULL,
             *name = NULL;
    /* Declined before anything is done: __init__ loads the instruments, records body sizes, or calls a
       C helper that something replaced (a test's patch) or switched off. */
    int own_attributes = global_is(R_asgi, s_r_native_attributes, R_native_attributes);
    int own_start = own_attributes <= 0 ? own_attributes : global_is(R_fastsdk, s_r_native_start, R_native_start);
    if (own_start < 0) goto done;
    if (!own_start) goto decline;
    tracer = PyObject_GetAttr(instruments, s_r_tracer);
    if (tracer == NULL) goto done;
    if (tracer == Py_None) goto decline;
    PyObject *sizes = PyObject_GetAttr(instruments, s_r_body_sizes);
    if (sizes == NULL) goto done;
    int sizes_on = PyObject_IsTrue(sizes);
    Py_DECREF(sizes);
    if (sizes_on < 0) goto done;
    if (sizes_on) goto decline;
    known = global_of(R_asgi, s_r_known);
    if (known == NULL) goto done;
    PyObject *attribute_args[] = {args[3], scheme, args[5], args[6], args[7], headers, args[10], args[11], known};
    made = request_attributes(NULL, attribute_args, 9);
    if (made == NULL) goto done;
    if (made == Py_None) goto decline;
    PyObject *time_module = global_of(R_asgi, s_r_time); /* time.perf_counter(), as __init__ reads it */
    if (time_module == NULL) goto done;
    clock = PyObject_GetAttr(time_module, s_r_perf_counter);
    Py_DECREF(time_module);
    if (clock == NULL) goto done;
    start = PyObject_CallNoArgs(clock);
    if (start == NULL) goto done;
    PyObject *method = PyTuple_GET_ITEM(made, 0), *span_attributes = PyTuple_GET_ITEM(made, 2);
    active_key = PyTuple_Pack(2, method, scheme);
    if (active_key == NULL) goto done;

    /* The parent: an empty Context, or what the propagator extracts when one of its headers came. */
    PyObject *propagation = global_of(R_web, s_r_propagation);
    if (propagation == NULL) goto done;
    PyObject *names = PyObject_GetAttr(propagation, s_r_names);
    Py_DECREF(propagation);
    if (names == NULL) goto done;
    int disjoint = 1;
    if (PyFrozenSet_CheckExact(names)) {
        Py_ssize_t pos = 0;
        PyObject *header, *value;
        while (disjoint == 1 && PyDict_Next(headers, &pos, &header, &value)) {
            Py_INCREF(header); /* a str subclass's hash may run Python code */
            int found = PySet_Contains(names, header);
            Py_DECREF(header);
            disjoint = found < 0 ? -1 : !found;
        }
    } else {
        PyObject *answer = PyObject_CallMethodOneArg(names, s_r_isdisjoint, headers);
        disjoint = answer == NULL ? -1 : PyObject_IsTrue(answer);
        Py_XDECREF(answer);
    }
    Py_DECREF(names);
    if (disjoint < 0) goto done;
    if (disjoint) {
        parent = PyObject_CallNoArgs(M_context_type);
    } else {
        PyObject *extract = global_of(R_propagate, s_r_extract);
        if (extract == NULL) goto done;
        PyObject *getter = global_of(R_asgi, s_r_getter);
        if (getter != NULL) {
            PyObject *extract_args[] = {headers, getter};
            parent = PyObject_Vectorcall(extract, extract_args, 1, R_kw_getter);
            Py_DECREF(getter);
        }
        Py_DECREF(extract);
    }
    if (parent == NULL) goto done;

    keys = request_keys_of(request_id, parent); /* best effort: the span and metrics still happen */
    if (keys == NULL) {
        if (!swallowed()) goto done;
        keys = Py_NewRef(Py_None);
    }
    int has_keys = PyObject_IsTrue(keys);
    if (has_keys < 0) goto done;
    if (has_keys) { /* span_attributes.update(keys) */
        if (PyDict_CheckExact(keys)) {
            if (PyDict_Update(span_attributes, keys) < 0) goto done;
        } else {
            PyObject *updated = PyObject_CallMethodOneArg(span_attributes, s_r_update, keys);
            if (updated == NULL) goto done;
            Py_DECREF(updated);
        }
    }

    int other = PyUnicode_CompareWithASCIIString(method, "_OTHER") == 0;
    name = Py_NewRef(other ? R_http : method);
    PyObject *start_args[] = {tracer, name, parent, R_server_kind, span_attributes, T_empty_args, Py_None,
                              Py_True, Py_True};
    span = start_span(NULL, start_args, 9);
    if (span == Py_None) {
        Py_DECREF(span);
        PyObject *method_args[] = {tracer, name, parent, R_server_kind, span_attributes};
        span = PyObject_VectorcallMethod(s_t_start_span, method_args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         R_kw_start);
    }
    if (span == NULL) goto done;

    if (has_keys) {
        ctx = context_with_keys(keys, parent, span);
        if (ctx != NULL) {
            PyObject *id = PyObject_GetItem(keys, R_request_id_key);
            PyObject *encoded = id == NULL ? NULL : PyUnicode_AsLatin1String(id);
            Py_XDECREF(id);
            pair = encoded == NULL ? NULL : PyTuple_Pack(2, header_name, encoded);
            Py_XDECREF(encoded);
            if (pair == NULL) Py_CLEAR(ctx);
        }
        if (ctx == NULL && !swallowed()) goto done;
    }
    int owned = ctx != NULL;
    if (ctx == NULL) {
        PyObject *set_span = global_of(R_trace, s_r_set_span_in_context);
        if (set_span == NULL) goto done;
        PyObject *set_args[] = {span, parent};
        ctx = PyObject_Vectorcall(set_span, set_args, 2, NULL);
        Py_DECREF(set_span);
        if (ctx == NULL) goto done;
    }
    PyObject *field_names[] = {s_r_start,     s_r_instruments, s_r_method,     s_r_attributes, s_r_active_key,
                               s_r_span,      s_r_header,      s_r_keys_owned, s_r_ctx,        s_r_status,
                               s_r_response_size, s_r_error,   s_r_route_keys};
    PyObject *fields[] = {Py_NewRef(start),
                          Py_NewRef(instruments),
                          Py_NewRef(method),
                          Py_NewRef(PyTuple_GET_ITEM(made, 1)),
                          Py_NewRef(active_key),
                          Py_NewRef(span),
                          Py_NewRef(pair != NULL ? pair : Py_None),
                          Py_NewRef(owned ? Py_True : Py_False),
                          Py_NewRef(ctx),
                          Py_NewRef(Py_None),
                          Py_NewRef(Py_None),
                          Py_NewRef(Py_None),
                          Py_NewRef(Py_None)};
    if (set_fields(state, field_names, fields, 13) < 0) goto done;
    if (count_started(active_key) < 0) goto done;
    result = Py_NewRef(Py_True);
    goto done;
decline:
    result = Py_NewRef(Py_False);
done:
    Py_XDECREF(clock);
    Py_XDECREF(start);
    Py_XDECREF(tracer);
    Py_XDECREF(known);
    Py_XDECREF(made);
    Py_XDECREF(active_key);
    Py_XDECREF(parent);
    Py_XDECREF(keys);
    Py_XDECREF(span);
    Py_XDECREF(pair);
    Py_XDECREF(ctx);
    Py_XDECREF(name);
    return result;
}

static PyObject *configure_requests(PyObject *self, PyObject *args) {
    enum { COUNT = 19 };
    PyObject *given[COUNT];
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!OOOOOOOOOOOO:configure_requests", &PyType_Type, &given[0],
                          &PyDict_Type, &given[1], &PyDict_Type, &given[2], &PyDict_Type, &given[3], &PyDict_Type,
                          &given[4], &PyDict_Type, &given[5], &PyDict_Type, &given[6], &given[7], &given[8],
                          &given[9], &given[10], &given[11], &given[12], &given[13], &given[14], &given[15],
                          &given[16], &given[17], &given[18]))
        return NULL;
    if (!PyUnicode_Check(given[16]) || !PyUnicode_Check(given[17]) || !PyUnicode_Check(given[18])) {
        PyErr_SetString(PyExc_TypeError, "configure_requests: the three context keys are str");
        return NULL;
    }
    if (R_hex == NULL) { /* the constants first: a failure leaves the function unconfigured (it declines) */
        PyObject *hex = PyUnicode_InternFromString("032x"), *http = PyUnicode_InternFromString("HTTP"),
                 *bits = PyLong_FromLong(128), *kw_getter = Py_BuildValue("(s)", "getter"),
                 *kw_start = Py_BuildValue("(sss)", "context", "kind", "attributes");
        if (hex == NULL || http == NULL || bits == NULL || kw_getter == NULL || kw_start == NULL) {
            Py_XDECREF(hex);
            Py_XDECREF(http);
            Py_XDECREF(bits);
            Py_XDECREF(kw_getter);
            Py_XDECREF(kw_start);
            return NULL;
        }
        R_http = http;
        R_128 = bits;
        R_kw_getter = kw_getter;
        R_kw_start = kw_start;
        R_hex = hex;
    }
    PyObject **slots[COUNT] = {&R_state_type,        &R_asgi,           &R_web,          &R_context,
                               &R_fastsdk,           &R_propagate,      &R_trace,        &R_request_keys,
                               &R_with_keys,         &R_new_request_id, &R_validate_value, &R_promote_inbound,
                               &R_native_attributes, &R_native_start,   &R_active_started, &R_server_kind,
                               &R_keys_key,          &R_baggage_key,    &R_request_id_key};
    for (int i = 1; i < COUNT; i++) Py_XSETREF(*slots[i], Py_NewRef(given[i])); /* once, at import */
    Py_XSETREF(R_state_type, Py_NewRef(given[0])); /* last: start_request runs only once all is set */
    Py_RETURN_NONE;
}

static PyObject *configure_metrics(PyObject *self, PyObject *args) {
    PyObject *given[18];
    if (!PyArg_ParseTuple(args, "OOOOOOOO!OOOO!OOOOOO:configure_metrics", &given[0], &given[1], &given[2],
                          &given[3], &given[4], &given[5], &given[6], &PyFrozenSet_Type, &given[7], &given[8],
                          &given[9], &given[10], &PyDict_Type, &given[11], &given[12], &given[13], &given[14],
                          &given[15], &given[16], &given[17]))
        return NULL;
    int types[] = {0, 1, 2, 3, 4, 5, 6, 14, 15, 16, 17};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (!PyType_Check(given[types[i]])) {
            PyErr_Format(PyExc_TypeError, "configure_metrics: argument %d must be a type", types[i] + 1);
            return NULL;
        }
    }
    if (!PyType_IsSubtype((PyTypeObject *)given[14], &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)given[15], &PyLong_Type) ||
        !PyType_IsSubtype((PyTypeObject *)given[17], &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_metrics: SpanContext is a tuple, TraceFlags an int and Context a dict type");
        return NULL;
    }
    if (!PyUnicode_Check(given[8]) || !PyCallable_Check(given[10]) || !PyCallable_Check(given[12])) {
        PyErr_SetString(PyExc_TypeError, "configure_metrics: the span key is a str, get_current and time_ns callables");
        return NULL;
    }
    PyObject **slots[] = {&M_consumer_type,     &M_sum_type,         &M_hist_type,         &M_aligned_type,
                          &M_simple_type,       &M_bucket_type,      &M_trace_filter_type, &M_span_types,
                          &M_span_key,          &M_invalid_span,     &M_get_current,       &M_namespace,
                          &M_real_time_ns,      &M_no_attributes,    &M_span_context_type, &M_trace_flags_type,
                          &M_proxy_config_type, &M_context_type};
    for (int i = 0; i < 18; i++) Py_XSETREF(*slots[i], Py_NewRef(given[i])); /* once, at import */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(ReadableSpan, SpanContext, Status, QueuedLogRecord, kinds, status_codes, severities)"},
    {"spans", spans, METH_VARARGS, "spans(items, tag, fallback) -> bytes: each span as field `tag`"},
    {"logs", logs, METH_VARARGS, "logs(items, tag, fallback) -> bytes: each queued log record as field `tag`"},
    {"plain", plain, METH_O, "plain(attributes) -> int: 0 not plain, 1 str/int values only, 2 with a float or a bool"},
    {"settled", (PyCFunction)(void (*)(void))settled, METH_FASTCALL,
     "settled(items, keys, texts, keep, key_verdict, scan) -> bool: nothing in items is masked"},
    {"configure_metrics", configure_metrics, METH_VARARGS,
     "configure_metrics(consumer, sum, histogram, aligned, simple, bucket, trace_filter, span_types, span_key, "
     "invalid_span, get_current, namespace, time_ns, no_attributes, SpanContext, TraceFlags, meter_config_proxy, "
     "Context)"},
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(instrument, amount, magnitude, attributes, context) -> bool: False when _record must decide"},
    {"configure_span_owners", configure_span_owners, METH_VARARGS,
     "configure_span_owners(multi_span_processor_type, (our_span_processor_type, ...))"},
    {"configure_spans", configure_spans, METH_VARARGS,
     "configure_spans(tracer, span, attributes, random_ids, default_on, record_and_sample, sampled_flags, "
     "sampled_random_flags, trace_state, unset_status, lock_factory, sdk_namespace, max_trace_id, max_span_id, "
     "readable_span)"},
    {"configure_sampling", configure_sampling, METH_VARARGS,
     "configure_sampling((ParentBased, ...), ParentBased.should_sample, TraceIdRatioBased, "
     "TraceIdRatioBased.should_sample, (StaticSampler, ...), StaticSampler.should_sample, Decision.DROP, "
     "unsampled_flags, unsampled_random_flags, NonRecordingSpan)"},
    {"configure_span_dispatch", configure_span_dispatch, METH_VARARGS,
     "configure_span_dispatch(multi, (multi.on_start, multi._on_ending, multi.on_end), (no-op function, ...), "
     "FastBatchSpanProcessor.on_end, Tracer._is_enabled, NoOpTracerMetrics, NoOpTracerMetrics.start_span, noop)"},
    {"configure_logs", configure_logs, METH_VARARGS, "configure_logs(FastBatchLogRecordProcessor, QueuedLogRecord)"},
    {"configure_loguru", configure_loguru, METH_VARARGS,
     "configure_loguru(keys_context_key, severities_by_level, [loguru_start_ns])"},
    {"loguru_record", (PyCFunction)(void (*)(void))loguru_record, METH_FASTCALL,
     "loguru_record(record, emitter) -> bool: False when _logs._loguru_sink must decide"},
    {"emit_log", (PyCFunction)(void (*)(void))emit_log, METH_FASTCALL,
     "emit_log(logger, timestamp, severity_number, severity_text, body, attributes, context, plain) -> bool: "
     "False when the Python emit must decide"},
    {"end_span", (PyCFunction)(void (*)(void))end_span, METH_FASTCALL,
     "end_span(span, name, attributes) -> bool: False when _FastSpan.end_as must decide"},
    {"start_span", (PyCFunction)(void (*)(void))start_span, METH_FASTCALL,
     "start_span(tracer, name, context, kind, attributes, links, start_time, record_exception, "
     "set_status_on_exception) -> span or None: None when _FastTracer.start_span must decide"},
    {"batch_settled", (PyCFunction)(void (*)(void))batch_settled, METH_FASTCALL,
     "batch_settled(batch, keys, texts, keep, key_verdict, scan, span_type, queued_type, status_type) -> bool: "
     "True when "
     "the scrubber leaves every span or queued log record of the batch as it is"},
    {"request_attributes", (PyCFunction)(void (*)(void))request_attributes, METH_FASTCALL,
     "request_attributes(raw_method, scheme, path, query, version, headers, client, server, known) -> "
     "(method, attributes, span_attributes), or None when _asgi_server.request_attributes must decide"},
    {"configure_requests", configure_requests, METH_VARARGS,
     "configure_requests(_RequestState, vars(_asgi_server), vars(_web), vars(_context), vars(_fastsdk), "
     "vars(propagate), vars(trace), request_keys, with_keys, new_request_id, validate_value, promote_inbound, "
     "the C request_attributes, the C start_span, _ActiveRequests.started, SpanKind.SERVER, keys_context_key, "
     "baggage_key, request_id_key)"},
    {"start_request", (PyCFunction)(void (*)(void))start_request, METH_FASTCALL,
     "start_request(state, instruments, header_name, raw_method, scheme, path, query, version, headers, "
     "request_id, client, server) -> bool: False when _RequestState.__init__ must decide"},
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
    struct {
        PyObject **slot;
        const char *text;
    } metric_names[] = {{&s_lock, "_lock"},
                        {&s_value, "_value"},
                        {&s_sum, "_sum"},
                        {&s_min, "_min"},
                        {&s_max, "_max"},
                        {&s_boundaries, "_boundaries"},
                        {&s_record_min_max, "_record_min_max"},
                        {&s_reservoir, "_reservoir"},
                        {&s_storage, "_reservoir_storage"},
                        {&s_seen, "_measurements_seen"},
                        {&s_size, "_size"},
                        {&s_b_value, "_ExemplarBucket__value"},
                        {&s_b_time, "_ExemplarBucket__time_unix_nano"},
                        {&s_b_attributes, "_ExemplarBucket__attributes"},
                        {&s_b_span_id, "_ExemplarBucket__span_id"},
                        {&s_b_trace_id, "_ExemplarBucket__trace_id"},
                        {&s_b_offered, "_ExemplarBucket__offered"},
                        {&s_routes, "_oc_routes"},
                        {&s_consumer, "_measurement_consumer"},
                        {&s_is_enabled, "_is_enabled"},
                        {&s_sdk_config, "_sdk_config"},
                        {&s_exemplar_filter, "exemplar_filter"},
                        {&s_should_sample, "should_sample"},
                        {&s_get_span_context, "get_span_context"},
                        {&s_trace_flags, "trace_flags"},
                        {&s_sampled, "sampled"},
                        {&s_span_id, "span_id"},
                        {&s_trace_id, "trace_id"},
                        {&s_acquire, "acquire"},
                        {&s_release, "release"},
                        {&s_empty_counts, "_get_empty_bucket_counts"},
                        {&s_offer, "offer"},
                        {&s_context_field, "_context"},
                        {&s_meter_config, "_meter_config"},
                        {&s_config_field, "_config"},
                        {&s_is_enabled_field, "is_enabled"},
                        {&s_n_time_ns, "time_ns"},
                        {&s_n_random, "_random"},
                        {&s_n_span_in, "_span_in"},
                        {&s_n_other, "_aggregate_other"},
                        {&s_n_getrandbits, "_getrandbits"},
                        {&s_t_sampler, "sampler"},
                        {&s_s_should_sample, "should_sample"},
                        {&s_s_root, "_root"},
                        {&s_s_remote_sampled, "_remote_parent_sampled"},
                        {&s_s_remote_not_sampled, "_remote_parent_not_sampled"},
                        {&s_s_local_sampled, "_local_parent_sampled"},
                        {&s_s_local_not_sampled, "_local_parent_not_sampled"},
                        {&s_s_decision, "_decision"},
                        {&s_s_limit, "TRACE_ID_LIMIT"},
                        {&s_s_bound, "bound"},
                        {&s_t_id_generator, "id_generator"},
                        {&s_t_resource, "resource"},
                        {&s_t_span_limits, "_span_limits"},
                        {&s_t_max_attributes, "max_span_attributes"},
                        {&s_t_max_attribute_length, "max_span_attribute_length"},
                        {&s_t_tracer_metrics, "_tracer_metrics"},
                        {&s_t_start_span, "start_span"},
                        {&s_t_span_processor, "span_processor"},
                        {&s_t_on_start, "on_start"},
                        {&s_t_generate_trace_id, "generate_trace_id"},
                        {&s_t_generate_span_id, "generate_span_id"},
                        {&s_t_instrumentation_info, "instrumentation_info"},
                        {&s_t_instrumentation_scope, "_instrumentation_scope"},
                        {&s_t_info_field, "_instrumentation_info"},
                        {&s_t_sampler_field, "_sampler"},
                        {&s_t_resource_field, "_resource"},
                        {&s_t_trace_config, "_trace_config"},
                        {&s_t_record_exception, "_record_exception"},
                        {&s_t_set_status, "_set_status_on_exception"},
                        {&s_t_span_processor_field, "_span_processor"},
                        {&s_t_limits, "_limits"},
                        {&s_t_record_end_metrics, "_record_end_metrics"},
                        {&s_t_dict, "_dict"},
                        {&s_t_maxlen, "maxlen"},
                        {&s_t_dropped, "dropped"},
                        {&s_t_max_value_len, "max_value_len"},
                        {&s_t_immutable, "_immutable"},
                        {&s_t_time_ns, "time_ns"},
                        {&s_t_on_ending, "_on_ending"},
                        {&s_t_on_end, "on_end"},
                        {&s_t_span_processors, "_span_processors"},
                        {&s_t_set_items, "_set_items"},
                        {&s_l_multi, "_multi_log_record_processor"},
                        {&s_l_processors, "_log_record_processors"},
                        {&s_l_limits, "_log_record_limits"},
                        {&s_l_max_attributes, "max_log_record_attributes"},
                        {&s_l_max_attribute_length, "max_log_record_attribute_length"},
                        {&s_l_is_enabled, "_is_enabled"},
                        {&s_l_metrics, "_logger_metrics"},
                        {&s_l_emit_log, "emit_log"},
                        {&s_l_batch, "_batch_processor"},
                        {&s_l_queue, "_queue"},
                        {&s_l_max_queue, "_max_queue_size"},
                        {&s_l_shutdown, "_shutdown"},
                        {&s_l_appendleft, "appendleft"},
                        {&s_l_awaken, "_worker_awaken"},
                        {&s_l_max_batch, "_max_export_batch_size"},
                        {&s_l_flag, "_flag"},
                        {&s_l_set, "set"},
                        {&s_n_enqueue, "_enqueue"},
                        {&s_g_extra, "extra"},
                        {&s_g_exception, "exception"},
                        {&s_g_function, "function"},
                        {&s_g_file, "file"},
                        {&s_g_path, "path"},
                        {&s_g_line, "line"},
                        {&s_g_name, "name"},
                        {&s_g_level, "level"},
                        {&s_g_no, "no"},
                        {&s_g_message, "message"},
                        {&s_g_elapsed, "elapsed"},
                        {&s_g_loggers, "_loggers"},
                        {&s_g_local, "_local"},
                        {&s_g_busy, "busy"},
                        {&s_g_loguru, "loguru"},
                        {&s_g_code_function, "code.function.name"},
                        {&s_g_code_file, "code.file.path"},
                        {&s_g_code_line, "code.line.number"},
                        {&s_r_start, "start"},
                        {&s_r_instruments, "instruments"},
                        {&s_r_method, "method"},
                        {&s_r_attributes, "attributes"},
                        {&s_r_active_key, "active_key"},
                        {&s_r_span, "span"},
                        {&s_r_header, "request_id_header"},
                        {&s_r_keys_owned, "keys_owned"},
                        {&s_r_ctx, "ctx"},
                        {&s_r_status, "status"},
                        {&s_r_response_size, "response_size"},
                        {&s_r_error, "error"},
                        {&s_r_route_keys, "route_keys"},
                        {&s_r_tracer, "tracer"},
                        {&s_r_body_sizes, "body_sizes"},
                        {&s_r_active, "ACTIVE_REQUESTS"},
                        {&s_r_series, "_series"},
                        {&s_r_started, "started"},
                        {&s_r_getter, "_GETTER"},
                        {&s_r_known, "_KNOWN_METHODS"},
                        {&s_r_propagation, "PROPAGATION_HEADERS"},
                        {&s_r_names, "names"},
                        {&s_r_isdisjoint, "isdisjoint"},
                        {&s_r_config, "CONFIG"},
                        {&s_r_max_length, "max_length"},
                        {&s_r_perf_counter, "perf_counter"},
                        {&s_r_random, "random"},
                        {&s_r_getrandbits, "getrandbits"},
                        {&s_r_extract, "extract"},
                        {&s_r_set_span_in_context, "set_span_in_context"},
                        {&s_r_request_keys, "request_keys"},
                        {&s_r_with_keys, "with_keys"},
                        {&s_r_new_request_id, "new_request_id"},
                        {&s_r_validate_value, "validate_value"},
                        {&s_r_promote_inbound, "promote_inbound"},
                        {&s_r_native_attributes, "_NATIVE_ATTRIBUTES"},
                        {&s_r_native_start, "_NATIVE_START"},
                        {&s_r_time, "time"},
                        {&s_r_update, "update"},
                        {&s_h_method, "http.request.method"},
                        {&s_h_scheme, "url.scheme"},
                        {&s_h_version, "network.protocol.version"},
                        {&s_h_path, "url.path"},
                        {&s_h_query, "url.query"},
                        {&s_h_original, "http.request.method_original"},
                        {&s_h_address, "server.address"},
                        {&s_h_port, "server.port"},
                        {&s_h_client_address, "client.address"},
                        {&s_h_client_port, "client.port"},
                        {&s_h_agent, "user_agent.original"},
                        {&s_h_host, "host"},
                        {&s_h_user_agent, "user-agent"},
                        {&s_h_other, "_OTHER"}};
    for (size_t i = 0; i < sizeof(metric_names) / sizeof(metric_names[0]); i++) {
        *metric_names[i].slot = PyUnicode_InternFromString(metric_names[i].text);
        if (*metric_names[i].slot == NULL) return NULL;
    }
    M_zero = PyLong_FromLong(0);
    if (M_zero == NULL) return NULL;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    return PyModule_Create(&module);
}

// Command tempo is otel-correlate's single-binary Tempo.
//
// It is a thin entry point of our own over github.com/grafana/tempo/cmd/tempo/app
// (pinned in go.mod). It understands the flags the stack uses:
//
//	tempo -config.file=stack/tempo/tempo.yaml -config.expand-env=true [-config.verify]
//
// plus every flag Tempo's configuration registers. Upstream's cmd/tempo is a
// main package and cannot be imported, so its start-up sequence is reproduced
// here; follow upstream's when the pin moves (see engines/README.md). Tempo's
// own OpenTelemetry self-tracing is not wired in.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/drone/envsubst"
	"github.com/go-kit/log/level"
	"github.com/grafana/dskit/flagext"
	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"google.golang.org/grpc/encoding"
	"gopkg.in/yaml.v2"

	"github.com/grafana/tempo/cmd/tempo/app"
	"github.com/grafana/tempo/pkg/gogocodec"
	tempolog "github.com/grafana/tempo/pkg/util/log"
)

const appName = "tempo"

func init() {
	prometheus.MustRegister(versioncollector.NewCollector(appName))
	// Tempo's gRPC services exchange gogo-protobuf messages; the codec must be
	// registered before any server or client is created.
	encoding.RegisterCodec(gogocodec.NewCodec())
}

// fileOptions are the flags that decide how the configuration file is read.
type fileOptions struct {
	path      string
	expandEnv bool
	verify    bool
	version   bool
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run starts Tempo with the given command-line arguments and returns the
// process exit code.
func run(args []string) int {
	cfg, opts, err := loadConfig(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tempo: cannot load the configuration: %v\n", err)
		return 1
	}
	if opts.version {
		fmt.Println(version.Print(appName))
		return 0
	}

	tempolog.InitLogger(&cfg.Server)
	valid := reportConfigWarnings(cfg)
	if opts.verify {
		if valid {
			return 0
		}
		return 1
	}

	t, err := app.New(*cfg)
	if err != nil {
		level.Error(tempolog.Logger).Log("msg", "cannot initialise tempo", "err", err)
		return 1
	}
	level.Info(tempolog.Logger).Log("msg", "starting tempo", "version", version.Info(), "target", cfg.Target, "config", opts.path)
	if err := t.Run(); err != nil {
		level.Error(tempolog.Logger).Log("msg", "tempo stopped with an error", "err", err)
		return 1
	}
	return 0
}

// scanFileOptions finds the file-related flags anywhere in args, ignoring
// every other flag (those are parsed later, after the defaults are known).
func scanFileOptions(args []string) fileOptions {
	var o fileOptions
	fs := flag.NewFlagSet("file-options", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.path, "config.file", "", "")
	fs.BoolVar(&o.expandEnv, "config.expand-env", false, "")
	fs.BoolVar(&o.verify, "config.verify", false, "")
	fs.BoolVar(&o.version, "version", false, "")
	for rest := args; len(rest) > 0; rest = rest[1:] {
		if strings.HasPrefix(rest[0], "-") {
			_ = fs.Parse(rest) // stops at the first unknown flag; keep scanning
		}
	}
	return o
}

// loadConfig builds Tempo's configuration: registered defaults, then the
// YAML file (optionally with ${VAR} expansion), then command-line flags.
func loadConfig(args []string) (*app.Config, fileOptions, error) {
	opts := scanFileOptions(args)
	cfg := &app.Config{}
	cfg.RegisterFlagsAndApplyDefaults("", flag.CommandLine)

	if opts.path != "" {
		raw, err := os.ReadFile(opts.path)
		if err != nil {
			return nil, opts, fmt.Errorf("read %s: %w", opts.path, err)
		}
		text := string(raw)
		if opts.expandEnv {
			if text, err = envsubst.EvalEnv(text); err != nil {
				return nil, opts, fmt.Errorf("expand environment variables in %s: %w", opts.path, err)
			}
		}
		if err := yaml.UnmarshalStrict([]byte(text), cfg); err != nil {
			return nil, opts, fmt.Errorf("parse %s: %w", opts.path, err)
		}
	}
	cfg.Overrides.ExpandEnv = opts.expandEnv

	flagext.IgnoredFlag(flag.CommandLine, "config.file", "Configuration file to load")
	flagext.IgnoredFlag(flag.CommandLine, "config.expand-env", "Expand ${VAR} in the configuration file")
	flagext.IgnoredFlag(flag.CommandLine, "config.verify", "Verify the configuration and exit")
	flag.CommandLine.Bool("version", false, "Print build information and exit")
	if err := flag.CommandLine.Parse(args); err != nil {
		return nil, opts, err
	}

	if cfg.Target == app.SingleBinary {
		// One process: rings live in memory and every member is this process.
		cfg.Ingester.LifecyclerConfig.RingConfig.KVStore.Store = "inmemory"
		cfg.Ingester.LifecyclerConfig.RingConfig.ReplicationFactor = 1
		cfg.Ingester.LifecyclerConfig.Addr = "127.0.0.1"
		cfg.Generator.Ring.KVStore.Store = "inmemory"
		cfg.Generator.Ring.InstanceAddr = "127.0.0.1"
	}
	return cfg, opts, nil
}

// reportConfigWarnings logs Tempo's warnings about suspect settings and
// reports whether there were none.
func reportConfigWarnings(cfg *app.Config) bool {
	warnings := cfg.CheckConfig()
	for _, w := range warnings {
		kv := []any{"msg", "configuration warning: " + w.Message}
		if w.Explain != "" {
			kv = append(kv, "explain", w.Explain)
		}
		level.Warn(tempolog.Logger).Log(kv...)
	}
	return len(warnings) == 0
}

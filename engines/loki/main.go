// Command loki is otel-correlate's single-binary Loki.
//
// It is a thin entry point of our own over the upstream packages of
// github.com/grafana/loki/v3 (pinned in go.mod): it parses the usual Loki
// flags and YAML file (-config.file, -config.expand-env), validates the
// result and runs every module the configured -target asks for ("all" by
// default). Upstream's cmd/loki is a main package and cannot be imported, so
// the start-up sequence is reproduced here; it must follow upstream's when
// the pin moves (see engines/README.md).
package main

import (
	// Must stay the first import: the pdata gRPC codec registered by the
	// OTLP packages falls back to this codec and panics if it is missing.
	_ "google.golang.org/grpc/encoding/proto"

	"flag"
	"fmt"
	"os"
	"time"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/grafana/loki/v3/pkg/loki"
	lokiruntime "github.com/grafana/loki/v3/pkg/runtime"
	"github.com/grafana/loki/v3/pkg/util"
	_ "github.com/grafana/loki/v3/pkg/util/build"
	"github.com/grafana/loki/v3/pkg/util/cfg"
	utillog "github.com/grafana/loki/v3/pkg/util/log"
	"github.com/grafana/loki/v3/pkg/validation"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run starts Loki with the given command-line arguments and returns the
// process exit code.
func run(args []string) int {
	started := time.Now()
	defer utillog.Flush()

	if loki.PrintVersion(args) {
		fmt.Println(version.Print("loki"))
		return 0
	}

	var c loki.ConfigWrapper
	if err := cfg.DynamicUnmarshal(&c, args, flag.CommandLine); err != nil {
		fmt.Fprintf(os.Stderr, "loki: cannot load the configuration: %v\n", err)
		return 1
	}
	if code, done := prepare(&c); done {
		return code
	}

	app, err := loki.New(c.Config)
	if err != nil {
		level.Error(utillog.Logger).Log("msg", "cannot initialise loki", "err", err)
		return 1
	}
	if c.ListTargets {
		app.ListTargets()
		return 0
	}
	level.Info(utillog.Logger).Log("msg", "starting loki", "version", version.Info(), "config", c.ConfigFile)
	if err := app.Run(loki.RunOpts{StartTime: started}); err != nil {
		level.Error(utillog.Logger).Log("msg", "loki stopped with an error", "err", err)
		return 1
	}
	return 0
}

// prepare applies the global defaults Loki's limits need, sets up logging
// and validates the configuration. It reports done=true when the process
// should exit with code instead of starting Loki.
func prepare(c *loki.ConfigWrapper) (code int, done bool) {
	// Per-tenant OTLP settings and policy stream mappings inherit from the
	// distributor's global ones.
	c.LimitsConfig.SetGlobalOTLPConfig(c.Distributor.OTLPConfig)
	if err := c.LimitsConfig.SetDefaultPolicyStreamMapping(c.Distributor.DefaultPolicyStreamMappings); err != nil {
		fmt.Fprintf(os.Stderr, "loki: invalid default policy stream mappings: %v\n", err)
		return 1, true
	}
	// Runtime overrides files are decoded on top of these defaults.
	validation.SetDefaultLimitsForYAMLUnmarshalling(c.LimitsConfig)
	lokiruntime.SetDefaultLimitsForYAMLUnmarshalling(c.OperationalConfig)

	c.Server.Log = utillog.InitLogger(&c.Server, prometheus.DefaultRegisterer, false)
	if c.InternalServer.Enable {
		c.InternalServer.Log = c.Server.Log
	}

	if err := c.Validate(); err != nil {
		level.Error(utillog.Logger).Log("msg", "invalid configuration", "err", err)
		return 1, true
	}
	if c.PrintConfig {
		if err := util.PrintConfig(os.Stderr, c); err != nil {
			level.Error(utillog.Logger).Log("msg", "cannot print the configuration", "err", err)
		}
	}
	if c.LogConfig {
		if err := util.LogConfig(c); err != nil {
			level.Error(utillog.Logger).Log("msg", "cannot log the configuration", "err", err)
		}
	}
	if c.VerifyConfig {
		level.Info(utillog.Logger).Log("msg", "config is valid")
		return 0, true
	}
	return 0, false
}

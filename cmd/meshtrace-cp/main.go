// Command meshtrace-cp runs a meshtrace control plane: `global`, `zone`, or
// `demo` (global and two zones in one process on embedded etcd).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/meshtrace/meshtrace/config"
	"github.com/meshtrace/meshtrace/demo"
	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/zone"
)

const usage = `meshtrace-cp: the meshtrace control plane

Usage:
  meshtrace-cp global [--config FILE] [--log-level L] [--log-json]
  meshtrace-cp global token zone --name ZONE [--valid-for D] [--config FILE]   issue a zone token (asks the running global)
  meshtrace-cp global token rotate-key [--grace-period D] [--config FILE]      new signing key; old tokens valid for D
  meshtrace-cp zone   [--config FILE] [--name ZONE] [--global-address HOST:PORT] [--log-level L] [--log-json]
  meshtrace-cp demo   [--dir DIR] [--log-level L]
  meshtrace-cp config global|zone                              print the configuration reference

Configuration: defaults, then --config YAML, then MESHTRACE_* environment, then flags.
`

// StopDeadline bounds the time from SIGINT/SIGTERM to exit. Parts drain
// for less than that (global.ShutdownTimeout); whatever still runs then is
// abandoned: etcd's files and the KDS cursors are safe against a hard stop.
const StopDeadline = 4500 * time.Millisecond

// gcPercent is the garbage collector's target (GOGC) unless the GOGC
// environment variable sets one: a control plane's live heap is small and
// what it allocates is mostly garbage of single requests and batches, so at
// Go's default of 100 it collects often. At 200, 1000 PUTs from 8 clients
// took 8-30% less CPU of global and the zones together in 6 of 7 alternated
// runs (BenchmarkBurstProcesses), for 10-14 MiB more peak memory each.
const gcPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go exitAfterDeadline(ctx, StopDeadline, os.Stderr, os.Exit)
	stopProfile, err := startCPUProfile(os.Getenv("MESHTRACE_CPUPROFILE"))
	if err == nil {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stopProfile()
	}
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "meshtrace-cp: %v\n", err)
		os.Exit(1)
	}
}

// exitAfterDeadline waits for ctx to end (a signal), then exits the process
// when it has not stopped within deadline, or at once on a second signal.
func exitAfterDeadline(ctx context.Context, deadline time.Duration, stderr io.Writer, exit func(int)) {
	<-ctx.Done()
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	t := time.NewTimer(deadline)
	defer t.Stop()
	select {
	case <-t.C:
		fmt.Fprintf(stderr, "meshtrace-cp: not stopped %s after the signal; exiting now\n", deadline)
	case <-again:
		fmt.Fprintln(stderr, "meshtrace-cp: second signal; exiting now")
	}
	exit(1)
}

// startCPUProfile writes a CPU profile (go tool pprof) of the whole process
// to path, 0600, until the returned stop is called: MESHTRACE_CPUPROFILE is
// a diagnostic for finding where a control plane spends its CPU. No path,
// no profile.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("MESHTRACE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("MESHTRACE_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no subcommand given")
	}
	switch args[0] {
	case "global":
		if len(args) > 1 && args[1] == "token" {
			return globalToken(ctx, args[2:], stdout, stderr)
		}
		return runGlobal(ctx, args[1:], stderr)
	case "zone":
		return runZone(ctx, args[1:], stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "config":
		if len(args) == 2 && args[1] == "global" {
			fmt.Fprint(stdout, global.ConfigReference())
			return nil
		}
		if len(args) == 2 && args[1] == "zone" {
			fmt.Fprint(stdout, zone.ConfigReference())
			return nil
		}
		return errors.New("config: want `config global` or `config zone`")
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

type logFlags struct {
	level string
	json  bool
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "", "trace, debug, info, warn or error (overrides log.level)")
	fs.BoolVar(&l.json, "log-json", false, "log JSON lines (overrides log.json)")
}

// apply overrides the configured log settings with the flags that were set.
func (l *logFlags) apply(c *config.LogConfig) {
	if l.level != "" {
		c.Level = l.level
	}
	if l.json {
		c.JSON = true
	}
}

func runGlobal(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("global", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := global.LoadConfig(*path)
	if err != nil {
		return err
	}
	lf.apply(&cfg.Log)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	g, err := global.New(cfg, cfg.Log.Logger("global", stderr))
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

func runZone(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("zone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file")
	name := fs.String("name", "", "zone name (overrides name)")
	globalAddr := fs.String("global-address", "", "global KDS address(es), comma separated (overrides global.addresses)")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := zone.LoadConfig(*path)
	if err != nil {
		return err
	}
	if *name != "" {
		cfg.Name = *name
	}
	if *globalAddr != "" {
		cfg.Global.Addresses = strings.Split(*globalAddr, ",")
	}
	lf.apply(&cfg.Log)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	z, err := zone.New(cfg, cfg.Log.Logger("zone", stderr))
	if err != nil {
		return err
	}
	return z.Run(ctx)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := demo.DefaultConfig()
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "state directory (default: a fresh temporary directory)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level of the control planes (logs go to stderr)")
	fs.StringVar(&cfg.GlobalAPI, "global-api", cfg.GlobalAPI, "global REST API address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// An address asked for explicitly is kept, or the demo fails naming it.
	fs.Visit(func(f *flag.Flag) { cfg.FreePortFallback = cfg.FreePortFallback && f.Name != "global-api" })
	return demo.Run(ctx, cfg, stdout, config.LogConfig{Level: cfg.LogLevel}.Logger("demo", stderr))
}

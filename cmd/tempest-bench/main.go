// Command tempest-bench measures Tempest subsystems and prints figures (text
// or --json). Each subsystem is a subcommand in its own file:
//
//	tempest-bench ricochet [flags]   Ricochet multicast over real UDP on loopback (or, with --sim, in the
//	                                 deterministic simulation): LEC+NAK vs a fair NAK-only baseline
//	tempest-bench http [flags]       the HTTP gateway: updates/s and latency with a closed loop of
//	                                 --concurrency clients; or, with --rate N, an open loop (a fixed
//	                                 schedule, latency from each request's intended send time, every
//	                                 answer compared with its budget); --find-capacity searches the
//	                                 highest rate answered 99.9% 2xx within budget, --overload 1,2,3
//	                                 runs at multiples of it; --node-process/--cpus node=0,gen=1 run
//	                                 the node as a separate (pinned) process
//	tempest-bench state [flags]      cost against state size: for each --items size, a fresh node
//	                                 process preloaded through cart/addmany, open-loop load over every
//	                                 cart (latency, stalls, CPU/request, RSS, bytes/item), then
//	                                 kill -9 and the time until every clone is ready again
//
// Progress goes to stderr; stdout carries only the results, so
// `tempest-bench ricochet --json | jq` works.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// subcommands maps a subcommand name to its entry point and one-line help.
var subcommands = map[string]struct {
	run  func(args []string, stdout, stderr io.Writer) error
	help string
}{
	"ricochet": {runRicochet, "Ricochet reliable multicast over UDP loopback: LEC+NAK vs NAK-only"},
	"http":     {runHTTP, "HTTP gateway throughput and latency: closed loop, or open loop with --rate/--find-capacity/--overload"},
	"state":    {runState, "cost against state size: latency, stalls, CPU, memory and restart time at --items sizes"},
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sc, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tempest-bench: unknown subcommand %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := sc.run(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "tempest-bench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tempest-bench <subcommand> [flags]   (tempest-bench <subcommand> -h for flags)")
	for _, name := range []string{"ricochet", "http", "state"} {
		fmt.Fprintf(w, "  %-9s %s\n", name, subcommands[name].help)
	}
}

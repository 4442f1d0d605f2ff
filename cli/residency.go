package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
)

// stringList is a repeatable flag; each value may also hold a comma-separated list.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// residency is `meshtracectl residency [ZONE] [-o table|yaml|json]` and
// `meshtracectl residency set ZONE [--allow P]... [--mode M] [--dry-run]`.
func (a *App) residency(ctx context.Context, c *Client, args []string) error {
	if len(args) > 0 && args[0] == "set" {
		return a.residencySet(ctx, c, args[1:])
	}
	fs := flag.NewFlagSet("residency", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	output := fs.String("o", "table", "output format: table, yaml or json")
	fs.StringVar(output, "output", "table", "output format: table, yaml or json")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return errors.New("residency: want at most one ZONE, or `residency set ZONE --allow PATTERN --mode Enforce|Audit|Off`")
	}
	var rep residency.Report
	if _, err := c.Do(ctx, http.MethodGet, "/residency", nil, nil, &rep); err != nil {
		return err
	}
	if len(pos) == 1 {
		var keep []residency.ZoneReport
		for _, z := range rep.Zones {
			if z.Zone == pos[0] {
				keep = append(keep, z)
			}
		}
		if len(keep) == 0 {
			return fmt.Errorf("residency: no zone %q (known: %s)", pos[0], zoneNames(rep))
		}
		rep.Zones = keep
	}
	switch *output {
	case "table":
		return printResidency(a.Stdout, rep, time.Now())
	case "yaml", "json":
		return printJSONorYAML(a.Stdout, rep, *output)
	}
	return fmt.Errorf("residency: -o must be table, yaml or json, not %q", *output)
}

func zoneNames(rep residency.Report) string {
	var names []string
	for _, z := range rep.Zones {
		names = append(names, z.Zone)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// printResidency writes one line per zone and collector, then the violations.
func printResidency(w io.Writer, rep residency.Report, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tMODE\tALLOWED\tPROXIES\tCOLLECTOR\tPROXIES THERE\tSTATUS")
	total := 0
	for _, z := range rep.Zones {
		allowed := dash(strings.Join(z.AllowedCollectors, ","))
		status := func(ok bool) string {
			switch {
			case z.Mode == resource.ResidencyOff:
				return "not checked"
			case ok:
				return "ok"
			}
			return "VIOLATION"
		}
		first := true
		row := func(collector, count, st string) {
			if first {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", z.Zone, z.Mode, allowed, z.Proxies, collector, count, st)
				first = false
				return
			}
			fmt.Fprintf(tw, "\t\t\t\t%s\t%s\t%s\n", collector, count, st)
		}
		for _, c := range z.Collectors {
			row(c.Collector, fmt.Sprint(c.Count), status(c.Allowed))
		}
		if z.TracingOff > 0 || first {
			row("(tracing off)", fmt.Sprint(z.TracingOff), "ok")
		}
		total += len(z.Violations)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if total == 0 {
		_, err := fmt.Fprintln(w, "\nNo violations.")
		return err
	}
	noun := "violations"
	if total == 1 {
		noun = "violation"
	}
	fmt.Fprintf(w, "\n%d %s:\n", total, noun)
	tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tMODE\tMESH\tPROXY\tCOLLECTOR\tPOLICY\tSINCE\tON THE ZONE")
	for _, z := range rep.Zones {
		onZone := map[string]string{}
		for _, r := range z.ZoneReported {
			onZone[r.Mesh+"/"+r.Proxy] = "flagged"
			if r.Blocked {
				onZone[r.Mesh+"/"+r.Proxy] = "tracing off"
			}
		}
		for _, v := range z.Violations {
			policy := "-"
			if v.Policy != nil {
				policy = v.Policy.Name
				if v.Policy.Origin == resource.OriginZone {
					policy += " (zone " + v.Policy.Zone + ")"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Zone, v.Mode, v.Mesh, v.Proxy, v.Collector, policy,
				age(v.Since, now), dash(onZone[v.Mesh+"/"+v.Proxy]))
		}
	}
	return tw.Flush()
}

// residencySet changes a zone's residency, creating the Zone when global
// does not know it yet (so residency can be declared before a zone connects).
func (a *App) residencySet(ctx context.Context, c *Client, args []string) error {
	fs := flag.NewFlagSet("residency set", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	var allowList stringList
	fs.Var(&allowList, "allow", "allowed collector: host, *.domain, IP or CIDR, optional :port (repeat, or comma-separate); replaces the list")
	clearList := fs.Bool("clear", false, "empty the allowed collectors")
	mode := fs.String("mode", "", "Enforce, Audit or Off (default: keep the current mode)")
	dryRun := fs.Bool("dry-run", false, "validate and show warnings without storing")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("residency set: want one ZONE, e.g. `residency set west --allow '*.west.svc' --mode Enforce`")
	}
	if len(allowList) == 0 && *mode == "" && !*clearList {
		return errors.New("residency set: nothing to change: give --allow, --mode or --clear")
	}
	name := pos[0]
	d, _ := resource.Lookup(resource.TypeZone)
	path := ResourcePath(d, "", name)
	zone := &resource.Resource{}
	if _, err := c.Do(ctx, http.MethodGet, path, nil, nil, zone); err != nil {
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			return err
		}
		if zone, err = resource.New(resource.TypeZone, "", name); err != nil {
			return err
		}
	}
	spec := zone.Spec.(*resource.ZoneSpec)
	if spec.Residency == nil {
		spec.Residency = &resource.Residency{}
	}
	if *clearList {
		spec.Residency.AllowedCollectors = nil
	}
	if len(allowList) > 0 {
		spec.Residency.AllowedCollectors = allowList
	}
	if *mode != "" {
		spec.Residency.Mode = resource.ResidencyMode(*mode)
	}
	q := url.Values{}
	if *dryRun {
		q.Set("dry-run", "true")
	}
	var res writeResult
	if _, err := c.Do(ctx, http.MethodPut, path, q, zone, &res); err != nil {
		return err
	}
	verb := "set"
	if *dryRun {
		verb = "valid (dry run)"
	}
	fmt.Fprintf(a.Stdout, "zone/%s residency %s: mode %s, allowed collectors: %s\n", name, verb,
		spec.ResidencyMode(), dash(strings.Join(spec.Residency.AllowedCollectors, ", ")))
	a.printWarnings(res)
	return nil
}

// writeResult is the body of a successful PUT or DELETE.
type writeResult struct {
	Warnings []string `json:"warnings"`
}

func (a *App) printWarnings(res writeResult) {
	for _, w := range res.Warnings {
		fmt.Fprintf(a.Stderr, "Warning: %s\n", w)
	}
}

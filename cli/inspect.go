package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"text/tabwriter"

	"github.com/meshtrace/meshtrace/inspect"
)

func (a *App) inspect(ctx context.Context, c *Client, args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	mesh := fs.String("mesh", "default", "mesh")
	fs.StringVar(mesh, "m", "default", "mesh (shorthand)")
	output := fs.String("o", "table", "output format: table, yaml or json")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("inspect: want `inspect dataplane NAME` or `inspect meshtrace NAME`")
	}
	base := "/meshes/" + url.PathEscape(*mesh)
	switch trimKind(pos[0]) {
	case "dataplane", "dataplanes", "dp":
		var rules inspect.DataplaneRules
		if _, err := c.Do(ctx, http.MethodGet, base+"/dataplanes/"+url.PathEscape(pos[1])+"/_rules", nil, nil, &rules); err != nil {
			return err
		}
		if *output != "table" {
			return printJSONorYAML(a.Stdout, rules, *output)
		}
		fmt.Fprintf(a.Stdout, "Dataplane %s/%s", rules.Mesh, rules.Name)
		if rules.Zone != "" {
			fmt.Fprintf(a.Stdout, " (zone %s)", rules.Zone)
		}
		fmt.Fprintln(a.Stdout)
		switch {
		case rules.Backend != "":
			fmt.Fprintf(a.Stdout, "Effective collector: %s %s\n", rules.Backend, rules.Collector)
		case len(rules.Policies) > 0:
			fmt.Fprintln(a.Stdout, "Effective collector: none (tracing turned off)")
		default:
			fmt.Fprintln(a.Stdout, "Effective collector: none (no MeshTrace applies)")
		}
		for _, w := range rules.Warnings {
			fmt.Fprintf(a.Stdout, "Warning: %s\n", w)
		}
		fmt.Fprintln(a.Stdout, "Contributing policies (merge order, last wins):")
		for _, p := range rules.Policies {
			fmt.Fprintf(a.Stdout, "  - %s %s\n", p.Type, p.Name)
		}
		if rules.Conf != nil {
			fmt.Fprintln(a.Stdout, "Merged configuration:")
			return printJSONorYAML(a.Stdout, rules.Conf, "yaml")
		}
		return nil
	case "meshtrace", "meshtraces":
		var aff inspect.AffectedDataplanes
		if _, err := c.Do(ctx, http.MethodGet, base+"/meshtraces/"+url.PathEscape(pos[1])+"/_resources/dataplanes", nil, nil, &aff); err != nil {
			return err
		}
		if *output != "table" {
			return printJSONorYAML(a.Stdout, aff, *output)
		}
		sort.Slice(aff.Items, func(i, j int) bool {
			if aff.Items[i].Zone != aff.Items[j].Zone {
				return aff.Items[i].Zone < aff.Items[j].Zone
			}
			return aff.Items[i].Name < aff.Items[j].Name
		})
		tw := tabwriter.NewWriter(a.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(tw, "ZONE\tMESH\tDATAPLANE\tSERVICE\tCOLLECTOR")
		for _, d := range aff.Items {
			coll := d.Collector
			if coll == "" {
				coll = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(d.Zone), d.Mesh, d.Name, dash(d.Service), coll)
		}
		return tw.Flush()
	}
	return fmt.Errorf("inspect: unknown kind %q (dataplane or meshtrace)", pos[0])
}

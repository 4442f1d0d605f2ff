package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// kindAliases maps what a user types to a registered type.
var kindAliases = map[string]resource.Type{
	"mesh": resource.TypeMesh, "meshes": resource.TypeMesh,
	"meshtrace": resource.TypeMeshTrace, "meshtraces": resource.TypeMeshTrace,
	"meshgateway": resource.TypeMeshGateway, "meshgateways": resource.TypeMeshGateway,
	"dataplane": resource.TypeDataplane, "dataplanes": resource.TypeDataplane, "dp": resource.TypeDataplane, "dps": resource.TypeDataplane,
	"zone": resource.TypeZone, "zones": resource.TypeZone,
	"zone-insight": resource.TypeZoneInsight, "zone-insights": resource.TypeZoneInsight,
}

func lookupKind(s string) (*resource.Descriptor, error) {
	t, ok := kindAliases[trimKind(s)]
	if !ok {
		return nil, fmt.Errorf("unknown resource kind %q (one of: meshes, meshtraces, meshgateways, dataplanes, zones, zone-insights)", s)
	}
	d, _ := resource.Lookup(t)
	return d, nil
}

// ResourcePath is the REST path of one resource.
func ResourcePath(d *resource.Descriptor, mesh, name string) string {
	if d.Scope == resource.ScopeGlobal {
		return "/" + d.Plural + "/" + url.PathEscape(name)
	}
	return "/meshes/" + url.PathEscape(mesh) + "/" + d.Plural + "/" + url.PathEscape(name)
}

func (a *App) apply(ctx context.Context, c *Client, args []string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	file := fs.String("f", "", "file to apply, or - for standard input")
	fs.StringVar(file, "file", "", "file to apply, or - for standard input")
	dryRun := fs.Bool("dry-run", false, "validate against the server without storing")
	if _, err := interleaved(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("apply: -f FILE or -f - is required")
	}
	var data []byte
	var err error
	if *file == "-" {
		data, err = io.ReadAll(a.Stdin)
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("apply: read %s: %w", *file, err)
	}
	docs := resource.DecodeDocuments(data)
	var bad int
	for _, d := range docs {
		if d.Err != nil {
			bad++
			fmt.Fprintf(a.Stderr, "%s: %v\n", *file, d.Err)
		}
	}
	if bad > 0 {
		return fmt.Errorf("apply: %d of %d documents of %s are invalid; nothing was applied", bad, len(docs), *file)
	}
	if len(docs) == 0 {
		return fmt.Errorf("apply: %s holds no resource", *file)
	}
	if len(docs) > 1 {
		err := a.applyBulk(ctx, c, docs, *dryRun)
		if !errors.Is(err, errNoBulk) {
			return err
		}
		fmt.Fprintln(a.Stderr, "Warning: the server has no bulk apply (POST /_apply): applying one document at a time, without validating them all first")
	}
	var failed int
	for _, doc := range docs {
		r := doc.Resource
		d, _ := resource.Lookup(r.Type)
		q := url.Values{}
		if *dryRun {
			q.Set("dry-run", "true")
		}
		var res writeResult
		code, err := c.Do(ctx, http.MethodPut, ResourcePath(d, r.Mesh, r.Name), q, r, &res)
		label := docLabel(r)
		if err != nil {
			failed++
			var apiErr *APIError
			if errors.As(err, &apiErr) {
				apiErr.At(doc.FieldLine)
			}
			fmt.Fprintf(a.Stderr, "%s: %v\n", label, err)
			continue
		}
		verb := "configured"
		if code == http.StatusCreated {
			verb = "created"
		}
		if *dryRun {
			verb = "valid (dry run)"
		}
		fmt.Fprintf(a.Stdout, "%s %s\n", label, verb)
		a.printWarnings(res)
	}
	if failed > 0 {
		return fmt.Errorf("apply: %d of %d resources failed", failed, len(docs))
	}
	return nil
}

func docLabel(r *resource.Resource) string {
	return strings.ToLower(string(r.Type)) + "/" + r.Name
}

type listPage struct {
	Total int               `json:"total"`
	Items []json.RawMessage `json:"items"`
	Next  *string           `json:"next"`
}

func (a *App) get(ctx context.Context, c *Client, args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	mesh := fs.String("mesh", "", "mesh (default: all meshes for lists, \"default\" for one resource)")
	fs.StringVar(mesh, "m", "", "mesh (shorthand)")
	output := fs.String("o", "table", "output format: table, yaml or json")
	fs.StringVar(output, "output", "table", "output format: table, yaml or json")
	effective := fs.Bool("effective", false, "show specs with their defaults filled in, not as applied")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	var extra url.Values
	if *effective {
		extra = url.Values{"effective": {"true"}}
	}
	if len(pos) == 0 || len(pos) > 2 {
		return errors.New("get: want a kind and an optional NAME, e.g. `get meshtraces` or `get meshtrace trace-west`")
	}
	switch *output {
	case "table", "yaml", "json":
	default:
		return fmt.Errorf("get: -o must be table, yaml or json, not %q", *output)
	}
	d, err := lookupKind(pos[0])
	if err != nil {
		return err
	}
	var raws []json.RawMessage
	single := len(pos) == 2
	if single {
		m := *mesh
		if m == "" {
			m = "default"
		}
		var raw json.RawMessage
		if _, err := c.Do(ctx, http.MethodGet, ResourcePath(d, m, pos[1]), extra, nil, &raw); err != nil {
			return err
		}
		raws = append(raws, raw)
	} else {
		path := "/" + d.Plural
		if d.Scope == resource.ScopeMesh && *mesh != "" {
			path = "/meshes/" + url.PathEscape(*mesh) + "/" + d.Plural
		}
		offset := 0
		for {
			var page listPage
			q := url.Values{"size": {"1000"}, "offset": {fmt.Sprint(offset)}}
			for k, v := range extra {
				q[k] = v
			}
			if _, err := c.Do(ctx, http.MethodGet, path, q, nil, &page); err != nil {
				return err
			}
			raws = append(raws, page.Items...)
			offset += len(page.Items)
			if page.Next == nil || len(page.Items) == 0 || offset >= page.Total {
				break
			}
		}
	}
	if *output != "table" {
		var v any = raws
		if single {
			v = raws[0]
		} else {
			v = map[string]any{"total": len(raws), "items": raws}
		}
		return printJSONorYAML(a.Stdout, v, *output)
	}
	items := make([]*resource.Resource, 0, len(raws))
	for i, raw := range raws {
		r := &resource.Resource{}
		if err := json.Unmarshal(raw, r); err != nil {
			return fmt.Errorf("get: item %d from server: %w", i, err)
		}
		items = append(items, r)
	}
	if d.Type == resource.TypeZone {
		return a.printZones(ctx, c, items)
	}
	return printTable(a.Stdout, d.Type, items, time.Now())
}

// printZones shows each zone with its sync state from its ZoneInsight.
func (a *App) printZones(ctx context.Context, c *Client, zones []*resource.Resource) error {
	var page listPage
	if _, err := c.Do(ctx, http.MethodGet, "/zone-insights", url.Values{"size": {"1000"}}, nil, &page); err != nil {
		return err
	}
	insights := map[string]*resource.ZoneInsightSpec{}
	for _, raw := range page.Items {
		r := &resource.Resource{}
		if err := json.Unmarshal(raw, r); err == nil {
			insights[r.Name] = r.Spec.(*resource.ZoneInsightSpec)
		}
	}
	now := time.Now()
	tw := tabwriter.NewWriter(a.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tGLOBAL INSTANCE\tACKED REVISION\tLAG\tNACKS\tPROXIES\tAGE")
	for _, z := range zones {
		in := insights[z.Name]
		if in == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\n", z.Name, "Offline", age(z.CreationTime, now))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", z.Name, zoneStatus(in), dash(in.GlobalInstance),
			in.LastAckedRevision, in.LagRevisions, in.NACKs, len(in.Proxies)+in.ProxiesOmitted, age(z.CreationTime, now))
	}
	return tw.Flush()
}

func (a *App) delete(ctx context.Context, c *Client, args []string) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	mesh := fs.String("mesh", "default", "mesh")
	fs.StringVar(mesh, "m", "default", "mesh (shorthand)")
	dryRun := fs.Bool("dry-run", false, "check the delete (e.g. residency) without deleting")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("delete: want a kind and a NAME, e.g. `delete meshtrace trace-west`")
	}
	d, err := lookupKind(pos[0])
	if err != nil {
		return err
	}
	q := url.Values{}
	verb := "deleted"
	if *dryRun {
		q.Set("dry-run", "true")
		verb = "can be deleted (dry run)"
	}
	var res writeResult
	if _, err := c.Do(ctx, http.MethodDelete, ResourcePath(d, *mesh, pos[1]), q, nil, &res); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "%s/%s %s\n", strings.ToLower(string(d.Type)), pos[1], verb)
	a.printWarnings(res)
	return nil
}

func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func printTable(w io.Writer, t resource.Type, items []*resource.Resource, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	switch t {
	case resource.TypeMeshTrace:
		fmt.Fprintln(tw, "MESH\tNAME\tTARGETREF\tBACKEND\tORIGIN\tAGE")
		for _, r := range items {
			s := r.Spec.(*resource.MeshTraceSpec)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Mesh, r.Name, targetRefString(s.TargetRef), backendString(s.Default), dash(r.Labels[resource.LabelOrigin]), age(r.CreationTime, now))
		}
	case resource.TypeDataplane:
		fmt.Fprintln(tw, "MESH\tNAME\tZONE\tSERVICES\tADDRESS\tAGE")
		for _, r := range items {
			s := r.Spec.(*resource.DataplaneSpec)
			var svcs []string
			zone := r.Labels[resource.LabelZone]
			for _, tags := range s.TagSets() {
				svcs = append(svcs, tags[resource.TagService])
				if zone == "" {
					zone = tags[resource.TagZone]
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Mesh, r.Name, dash(zone), dash(strings.Join(svcs, ",")), s.Networking.Address, age(r.CreationTime, now))
		}
	case resource.TypeZoneInsight:
		fmt.Fprintln(tw, "NAME\tSTATUS\tACKED REVISION\tLAG\tNACKS\tPROXIES\tAGE")
		for _, r := range items {
			s := r.Spec.(*resource.ZoneInsightSpec)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", r.Name, onlineString(s.Online), s.LastAckedRevision, s.LagRevisions, s.NACKs, len(s.Proxies), age(r.CreationTime, now))
		}
	default:
		fmt.Fprintln(tw, "NAME\tAGE")
		for _, r := range items {
			fmt.Fprintf(tw, "%s\t%s\n", r.Name, age(r.CreationTime, now))
		}
	}
	return tw.Flush()
}

// zoneStatus is Online or Offline, with the held deletes when a zone holds
// some (release them with `zone release-deletes`).
func zoneStatus(in *resource.ZoneInsightSpec) string {
	s := onlineString(in.Online)
	if in.Held != nil {
		s += fmt.Sprintf(", held (%d deletes)", in.Held.Deletes)
	}
	return s
}

// zone release-deletes ZONE.
func (a *App) zone(ctx context.Context, c *Client, args []string) error {
	if len(args) != 2 || args[0] != "release-deletes" {
		return errors.New("zone: want `zone release-deletes ZONE`")
	}
	var out struct {
		Release string `json:"release"`
	}
	if _, err := c.Do(ctx, http.MethodPost, "/zones/"+url.PathEscape(args[1])+"/release-deletes", nil, nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "released the held deletes of zone %s (release %s); it applies them at its next snapshot\n", args[1], out.Release)
	return nil
}

func onlineString(b bool) string {
	if b {
		return "Online"
	}
	return "Offline"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func targetRefString(t *resource.TargetRef) string {
	if t == nil {
		return resource.KindMesh
	}
	out := t.Kind
	if t.Name != "" {
		out += "/" + t.Name
	}
	if len(t.Tags) > 0 {
		keys := make([]string, 0, len(t.Tags))
		for k := range t.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + t.Tags[k]
		}
		out += "{" + strings.Join(parts, ",") + "}"
	}
	return out
}

func backendString(c *resource.MeshTraceConf) string {
	if c == nil || c.Backends == nil {
		return "-"
	}
	if len(*c.Backends) == 0 {
		return "off"
	}
	b := (*c.Backends)[0]
	switch {
	case b.Zipkin != nil:
		return "Zipkin " + b.Zipkin.URL
	case b.Datadog != nil:
		return "Datadog " + b.Datadog.URL
	case b.OpenTelemetry != nil:
		return "OpenTelemetry " + b.OpenTelemetry.Endpoint
	}
	return b.Type
}

// generate zone-token --zone ZONE, as kumactl generate zone-token.
func (a *App) generate(ctx context.Context, c *Client, args []string) error {
	if len(args) == 0 || args[0] != "zone-token" {
		return errors.New("generate: want `generate zone-token --zone ZONE`")
	}
	fs := flag.NewFlagSet("generate zone-token", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	zone := fs.String("zone", "", "zone name")
	validFor := fs.Duration("valid-for", 0, `how long the token is valid (for example "24h"; default: the server's, 10 years as Kuma's API)`)
	if _, err := interleaved(fs, args[1:]); err != nil {
		return err
	}
	if *zone == "" {
		return errors.New("generate zone-token: --zone is required")
	}
	req := map[string]string{"zone": *zone}
	if *validFor != 0 {
		req["validFor"] = validFor.String()
	}
	_, token, err := c.Raw(ctx, http.MethodPost, "/tokens/zone", nil, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.Stdout, strings.TrimSpace(string(token)))
	return nil
}

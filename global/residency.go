package global

import (
	"context"
	"errors"

	"github.com/meshtrace/meshtrace/residency"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Residency is the residency index (nil before Run opened the store).
func (g *Global) Residency() *residency.Index {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.res
}

// zoneEnforcement adds to a residency report what each zone reports in its
// ZoneInsight: the proxies whose tracing the zone turned off (Enforce) or
// flagged (Audit) by its own check.
func (g *Global) zoneEnforcement(ctx context.Context, rep *residency.Report) {
	st := g.Store()
	for i := range rep.Zones {
		z := &rep.Zones[i]
		in, _, err := st.Get(ctx, resource.Key{Type: resource.TypeZoneInsight, Name: z.Zone})
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				g.log.Named("residency").Warn("cannot read zone insight", "zone", z.Zone, "error", err)
			}
			continue
		}
		spec, _ := in.Spec.(*resource.ZoneInsightSpec)
		if spec == nil {
			continue
		}
		for _, p := range spec.Proxies {
			if p.ResidencyViolation != "" {
				z.ZoneReported = append(z.ZoneReported, residency.ZoneReported{
					Mesh: p.Mesh, Proxy: p.Name, Collector: p.ResidencyCollector, Blocked: p.ResidencyBlocked, Reason: p.ResidencyViolation,
				})
			}
		}
	}
}

package residency

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
)

// maxRefusalCauses caps the per-proxy causes of a residency 409.
const maxRefusalCauses = 20

// maxRefusalDetails caps the verdicts listed in a 409's details.
const maxRefusalDetails = 200

// Admission adapts Admit to restapi.Config.Admit: MeshTrace writes that
// would make a proxy of a zone in Enforce mode export outside the zone's
// allowed collectors are refused (409, a cause per proxy naming zone, proxy,
// collector and the responsible policy); Audit-mode violations and, for Zone
// writes, the proxies the new residency flags are answered as warnings.
// index returns nil while there is no index yet (writes then pass).
func Admission(index func() *Index) func(ctx context.Context, old, cur *resource.Resource) ([]string, func(int64), error) {
	return func(ctx context.Context, old, cur *resource.Resource) ([]string, func(int64), error) {
		return admission(ctx, index(), old, cur)
	}
}

func admission(ctx context.Context, ix *Index, old, cur *resource.Resource) ([]string, func(int64), error) {
	if ix == nil {
		return nil, nil, nil
	}
	d, err := ix.Admit(ctx, old, cur)
	if err != nil {
		if errors.Is(err, ErrNotReady) {
			return nil, nil, restapi.NewError(http.StatusServiceUnavailable, err.Error()+"; retry")
		}
		return nil, nil, err
	}
	if !d.Allowed() {
		d.Done(0)
		return nil, nil, refusal(old, cur, d)
	}
	return d.warnings(), d.Done, nil
}

// warnings are what an admitted write answers: Audit-mode violations and,
// for a Zone write, the violations its residency finds now.
func (d *Decision) warnings() []string {
	var warnings []string
	for _, v := range d.Audited {
		warnings = append(warnings, "residency (Audit, admitted and recorded): "+v.Message())
	}
	for _, v := range d.Current {
		warnings = append(warnings, "residency: currently violating: "+v.Message())
	}
	return capWarnings(warnings)
}

// AdmissionBatch adapts AdmitBatch to restapi.Config.AdmitBatch: the
// documents of one POST /_apply are checked together; a document charged
// with a violation in an Enforce zone gets the same 409 a single PUT would.
func AdmissionBatch(index func() *Index) func(ctx context.Context, rs []*resource.Resource) ([][]string, []error, func(int64), error) {
	return func(ctx context.Context, rs []*resource.Resource) ([][]string, []error, func(int64), error) {
		ix := index()
		if ix == nil {
			return nil, nil, nil, nil
		}
		b, err := ix.AdmitBatch(ctx, rs)
		if err != nil {
			if errors.Is(err, ErrNotReady) {
				return nil, nil, nil, restapi.NewError(http.StatusServiceUnavailable, err.Error()+"; retry")
			}
			return nil, nil, nil, err
		}
		warnings := make([][]string, len(rs))
		errs := make([]error, len(rs))
		for i := range b.Items {
			if !b.Items[i].Allowed() {
				errs[i] = refusal(nil, rs[i], &b.Items[i])
				continue
			}
			warnings[i] = b.Items[i].warnings()
		}
		if !b.Allowed() {
			b.Done(0)
			return warnings, errs, nil, nil
		}
		return warnings, errs, b.Done, nil
	}
}

func capWarnings(ws []string) []string {
	if len(ws) <= maxRefusalCauses {
		return ws
	}
	return append(ws[:maxRefusalCauses:maxRefusalCauses], fmt.Sprintf("and %d more", len(ws)-maxRefusalCauses))
}

// refusalDetails is the machine-readable part of a residency 409.
type refusalDetails struct {
	Residency struct {
		// Total is the number of proxies that would export outside their zone.
		Total int `json:"total"`
		// Violations lists them (at most 200).
		Violations []Verdict `json:"violations"`
	} `json:"residency"`
}

// refusal is the 409 for a write refused by residency: one cause per proxy
// (zone, proxy, collector, responsible policy) under the field that brings
// the collector in.
func refusal(old, cur *resource.Resource, d *Decision) *restapi.Error {
	some, verb := cur, "writing"
	if cur == nil {
		some, verb = old, "deleting"
	}
	zones := map[string]bool{}
	for _, v := range d.Refused {
		zones[v.Zone] = true
	}
	detail := fmt.Sprintf("%s MeshTrace %q in mesh %q would make %d proxies of %d zones in residency Enforce mode export spans to collectors outside their zone",
		verb, some.Name, some.Mesh, len(d.Refused), len(zones))
	var causes []resource.Violation
	for i, v := range d.Refused {
		if i == maxRefusalCauses {
			causes = append(causes, resource.Violation{Message: fmt.Sprintf("and %d more proxies", len(d.Refused)-i)})
			break
		}
		field := ""
		switch {
		case cur == nil:
		case v.Policy != nil && v.Policy.Name == cur.Name && v.Policy.Mesh == cur.Mesh:
			field = "spec.default.backends"
		default:
			field = "spec.targetRef"
		}
		causes = append(causes, resource.Violation{Field: field, Message: v.Message()})
	}
	e := restapi.NewError(http.StatusConflict, detail, causes...)
	var det refusalDetails
	det.Residency.Total = len(d.Refused)
	det.Residency.Violations = d.Refused[:min(len(d.Refused), maxRefusalDetails)]
	e.Details = det
	return e
}

// Handler is GET /residency: per zone, mode, allowed set, proxies by
// effective collector and current violations. enrich, when set, adds to the
// report before it is sent (global adds what zones report).
func Handler(index func() *Index, enrich func(ctx context.Context, rep *Report)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ix := index()
		if ix == nil || !ix.Ready() {
			restapi.WriteError(w, restapi.NewError(http.StatusServiceUnavailable, "the residency index is loading; retry"))
			return
		}
		rep := ix.Report()
		if enrich != nil {
			enrich(r.Context(), &rep)
		}
		restapi.WriteJSON(w, http.StatusOK, rep)
	})
}

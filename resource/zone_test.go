package resource

import (
	"testing"
)

func TestZoneResidencyValidation(t *testing.T) {
	zone := func(residency string) string { return "type: Zone\nname: west\nresidency:\n" + residency }
	tests := []struct {
		name string
		doc  string
		want ValidationErrors
	}{
		{"no residency", "type: Zone\nname: west\n", nil},
		{"enforce", zone("  mode: Enforce\n  allowedCollectors: ['*.west.svc', 'jaeger.west.svc:9411', 10.1.0.0/16, '[fd00::/8]:4317']\n"), nil},
		{"audit without collectors", zone("  mode: Audit\n"), nil},
		{"mode defaults to Off", zone("  allowedCollectors: ['*.west.svc']\n"), nil},
		{"unquoted Off reads as false and means Off", zone("  mode: Off\n"), nil},
		{"bad mode", zone("  mode: enforce\n"),
			ValidationErrors{v("residency.mode", `must be one of Enforce, Audit or Off, got "enforce"`)}},
		{"bad collectors", zone("  mode: Enforce\n  allowedCollectors: ['*.west.svc', 'http://jaeger:9411', '10.1.2.3/16', '*.WEST.svc', 'a:0']\n"),
			ValidationErrors{
				v("residency.allowedCollectors[1]", "must be a host, *.domain or CIDR with an optional :port, not a URL"),
				v("residency.allowedCollectors[2]", `"10.1.2.3/16" has host bits set: write 10.1.0.0/16`),
				v("residency.allowedCollectors[3]", "duplicate of [0]"),
				v("residency.allowedCollectors[4]", `port "0" must be a number from 1 to 65535`),
			}},
		{"kubernetes form", "apiVersion: kuma.io/v1alpha1\nkind: Zone\nmetadata:\n  name: west\nspec:\n  residency:\n    mode: Bogus\n",
			ValidationErrors{v("residency.mode", `must be one of Enforce, Audit or Off, got "Bogus"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkViolations(t, tt.doc, tt.want) })
	}
}

func TestZoneResidencyModeDecoding(t *testing.T) {
	for doc, want := range map[string]string{
		"type: Zone\nname: west\nresidency:\n  mode: yes\n": "must be one of Enforce, Audit or Off, got the boolean true (YAML reads an unquoted yes/on/true as one)",
		"type: Zone\nname: west\nresidency:\n  mode: 3\n":   "must be a string",
	} {
		_, err := Decode([]byte(doc))
		if got := violations(t, err); len(got) != 1 || got[0] != v("residency.mode", want) {
			t.Errorf("%s: %v", doc, got)
		}
	}
}

func TestZoneResidencyDefaults(t *testing.T) {
	r := mustDecode(t, "type: Zone\nname: west\nresidency:\n  allowedCollectors: ['*.west.svc']\n")
	Prepare(r)
	s := r.Spec.(*ZoneSpec)
	if s.Residency.Mode != ResidencyOff || s.ResidencyMode() != ResidencyOff {
		t.Fatalf("mode = %q", s.Residency.Mode)
	}
	if (&ZoneSpec{}).ResidencyMode() != ResidencyOff || (*ZoneSpec)(nil).ResidencyMode() != ResidencyOff {
		t.Fatal("a zone without residency is not Off")
	}
	r = mustDecode(t, "apiVersion: kuma.io/v1alpha1\nkind: Zone\nmetadata:\n  name: west\nspec:\n  residency:\n    mode: Enforce\n    allowedCollectors: ['*.west.svc']\n")
	if got := r.Spec.(*ZoneSpec).ResidencyMode(); got != ResidencyEnforce || r.Name != "west" {
		t.Fatalf("kubernetes manifest: %s %q", r.Name, got)
	}
}

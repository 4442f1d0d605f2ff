package resource

import (
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
)

// Messages shared by several validators.
const (
	msgMustBeDefined    = "must be defined"
	msgMustNotBeEmpty   = "must not be empty"
	msgNotSupported     = "value is not supported"
	msgPortRange        = "must be in the range 1-65535"
	msgTagKeyEmpty      = "tag name must be non-empty"
	msgTagValueEmpty    = "tag value must be non-empty"
	msgTagKeyCharset    = "tag name must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores"
	msgTagValueCharset  = "tag value must consist of alphanumeric characters, dots, dashes, colons and underscores"
	msgNameCharset      = "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
	msgLabelValueFormat = "label value must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
	msgLabelKeyFormat   = "label key must be an optional DNS subdomain prefix and '/', then at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
	maxNameLength       = MaxNameLength
)

// MaxNameLength is the longest resource or mesh name (a DNS subdomain).
const MaxNameLength = 253

// Validate checks r's envelope (type, name, mesh, labels) and its spec. It
// returns an *InvalidError holding every violation in a deterministic order, or
// nil. Policy spec fields are reported under "spec."; the fields of types whose
// spec is inline (Mesh, Dataplane, ...) are reported unprefixed.
func Validate(r *Resource) error {
	var errs ValidationErrors
	if r == nil {
		errs.Add("", "resource must not be nil")
		return errs.Err()
	}
	d, ok := Lookup(r.Type)
	if !ok {
		if r.Type == "" {
			errs.Add("type", msgMustBeDefined)
		} else {
			errs.Add("type", fmt.Sprintf("unknown type %q", r.Type))
		}
	}
	validateName(&errs, "name", r.Name)
	if ok {
		switch d.Scope {
		case ScopeMesh:
			validateName(&errs, "mesh", r.Mesh)
		case ScopeGlobal:
			if r.Mesh != "" {
				errs.Add("mesh", fmt.Sprintf("must not be set for %s, which does not belong to a mesh", r.Type))
			}
		}
	}
	labels := rootPath("labels")
	var buf [8]string
	for _, k := range appendSortedKeys(buf[:0], r.Labels) {
		lp := labels.key(k)
		validateLabel(&errs, &lp, k, r.Labels[k])
	}
	if ok {
		// The rules apply to the spec with its defaults filled in (a spec
		// is stored as applied; zones fill the defaults in where they use it),
		// on a copy unless the spec says they find the same on itself.
		spec := r.Spec
		if v, can := spec.(effectiveValidator); !can || reflect.TypeOf(spec) != d.specType || !v.validatesAsEffective() {
			spec = effectiveSpec(d, r.Spec)
		}
		prefix := ""
		if d.IsPolicy {
			prefix = "spec"
		}
		errs.AddPrefixed(prefix, spec.Validate())
	}
	return errs.Err()
}

// effectiveValidator is a spec whose Validate can find on the spec itself
// what it finds on effectiveSpec's copy, when validatesAsEffective says so;
// TestValidatorMatchesReference checks the two agree.
type effectiveValidator interface {
	validatesAsEffective() bool
}

func validateName(errs *ValidationErrors, field, name string) {
	switch {
	case name == "":
		errs.Add(field, msgMustNotBeEmpty)
	case len(name) > maxNameLength:
		errs.Add(field, fmt.Sprintf("must be at most %d characters", maxNameLength))
	case !isDNS1123(name):
		errs.Add(field, msgNameCharset)
	}
}

func validateLabel(errs *ValidationErrors, field *fieldPath, key, value string) {
	name := key
	if prefix, rest, ok := strings.Cut(key, "/"); ok {
		if prefix == "" || len(prefix) > maxNameLength || !isDNS1123(prefix) {
			errs.addAt(field, msgLabelKeyFormat)
			return
		}
		name = rest
	}
	if len(name) == 0 || len(name) > 63 || !isLabelName(name) {
		errs.addAt(field, msgLabelKeyFormat)
		return
	}
	if value == "" {
		return
	}
	if len(value) > 63 || !isLabelName(value) {
		errs.addAt(field, msgLabelValueFormat)
	}
}

// validateTags checks tag keys and values against Kuma's tag charset.
func validateTags(errs *ValidationErrors, field *fieldPath, tags map[string]string) {
	var buf [8]string
	for _, k := range appendSortedKeys(buf[:0], tags) {
		f := field.key(k)
		v := tags[k]
		switch {
		case k == "":
			errs.addAt(&f, msgTagKeyEmpty)
		case !isTagKey(k):
			errs.addAt(&f, msgTagKeyCharset)
		}
		switch {
		case v == "":
			errs.addAt(&f, msgTagValueEmpty)
		case !isTagValue(v):
			errs.addAt(&f, msgTagValueCharset)
		}
	}
}

// appendSortedKeys appends m's keys to dst in order: given a buffer on the
// caller's stack it does not allocate for the few keys tags usually have.
func appendSortedKeys[V any](dst []string, m map[string]V) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

// validPort reports whether p is a usable TCP port.
func validPort(p uint32) bool { return p >= 1 && p <= 65535 }

// isIPOrHostname reports whether s is an IP address or a DNS hostname.
// The hostname check comes first: it is a pure test of the bytes, while
// net.ParseIP allocates an error for every name that is not an IP.
func isIPOrHostname(s string) bool {
	return (len(s) <= maxNameLength && isHostname(s)) || net.ParseIP(s) != nil
}

// notSupported is Kuma's "value is not supported" message followed by the
// values that are, so the reader does not have to look them up.
func notSupported(got string, supported []string) string {
	return fmt.Sprintf("%s: %q; supported: %s", msgNotSupported, got, strings.Join(supported, ", "))
}

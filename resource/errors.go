package resource

import (
	"fmt"
	"strings"
)

// Violation is one problem with one field.
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Line is the 1-based line of Field in the decoded input, when known.
	Line int `json:"line,omitempty"`
}

// ValidationErrors lists every violation found, in a deterministic order.
type ValidationErrors []Violation

// Add appends a violation.
func (v *ValidationErrors) Add(field, msg string) {
	*v = append(*v, Violation{Field: field, Message: msg})
}

// AddPrefixed appends other with prefix prepended to each field path.
func (v *ValidationErrors) AddPrefixed(prefix string, other ValidationErrors) {
	for _, o := range other {
		f := o.Field
		switch {
		case prefix == "":
		case f == "":
			f = prefix
		case strings.HasPrefix(f, "["):
			f = prefix + f
		default:
			f = prefix + "." + f
		}
		*v = append(*v, Violation{Field: f, Message: o.Message})
	}
}

// Err returns nil when there are no violations, else an *InvalidError.
func (v ValidationErrors) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &InvalidError{Violations: v}
}

// InvalidError is returned by decoding and validation; errors.As it to get the
// per-field violations.
type InvalidError struct {
	Violations ValidationErrors
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		switch {
		case v.Field == "":
			parts[i] = v.Message
		case v.Line > 0:
			parts[i] = fmt.Sprintf("line %d: %s: %s", v.Line, v.Field, v.Message)
		default:
			parts[i] = fmt.Sprintf("%s: %s", v.Field, v.Message)
		}
	}
	return "invalid resource: " + strings.Join(parts, "; ")
}

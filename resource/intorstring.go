package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// IntOrString is a number written either as a JSON integer or as a string
// holding a decimal ("12.5"), like Kubernetes' intstr used by Kuma.
type IntOrString struct {
	IsString bool
	IntVal   int64
	StrVal   string
}

// Int returns an IntOrString holding i.
func Int(i int64) *IntOrString { return &IntOrString{IntVal: i} }

// Str returns an IntOrString holding s.
func Str(s string) *IntOrString { return &IntOrString{IsString: true, StrVal: s} }

// Float returns the value as a float64, or an error when the string is not a number.
func (v IntOrString) Float() (float64, error) {
	if !v.IsString {
		return float64(v.IntVal), nil
	}
	f, err := strconv.ParseFloat(v.StrVal, 64)
	if err != nil {
		return 0, fmt.Errorf("string is not a number")
	}
	return f, nil
}

func (v IntOrString) String() string {
	if v.IsString {
		return v.StrVal
	}
	return strconv.FormatInt(v.IntVal, 10)
}

// MarshalJSON writes an int as a number and a string as a string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.StrVal)
	}
	return json.Marshal(v.IntVal)
}

// UnmarshalJSON accepts a JSON integer or a JSON string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = IntOrString{IsString: true, StrVal: s}
		return nil
	}
	var i int64
	if err := json.Unmarshal(b, &i); err != nil {
		return fmt.Errorf("must be an integer or a string holding a decimal number, got %s", string(b))
	}
	*v = IntOrString{IntVal: i}
	return nil
}

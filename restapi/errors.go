package restapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Error is Kuma's "std-errors" body. Every non-2xx answer of the API has this
// shape, so clients (kumactl, meshtracectl) can show a title and per-field
// causes. invalid_parameters (Kuma 2.x) and causes (older kumactl) carry the
// same per-field problems; both are always present, possibly empty.
type Error struct {
	Type              string             `json:"type"`
	Status            int                `json:"status"`
	Title             string             `json:"title"`
	Detail            string             `json:"detail"`
	InvalidParameters []InvalidParameter `json:"invalid_parameters"`
	Causes            []Cause            `json:"causes"`
	// Details, when set, carries a machine-readable account of the error
	// (e.g. the residency violations behind a 409).
	Details any `json:"details,omitempty"`
}

// InvalidParameter is one field problem in Kuma 2.x's form.
type InvalidParameter struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Cause is one field problem in kumactl's older form.
type Cause struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Title + ": " + e.Detail }

// NewError builds an Error with one cause per violation.
func NewError(status int, detail string, violations ...resource.Violation) *Error {
	e := &Error{
		Type:              "/std-errors",
		Status:            status,
		Title:             http.StatusText(status),
		Detail:            detail,
		InvalidParameters: []InvalidParameter{},
		Causes:            []Cause{},
	}
	for _, v := range violations {
		e.InvalidParameters = append(e.InvalidParameters, InvalidParameter{Field: v.Field, Reason: v.Message})
		e.Causes = append(e.Causes, Cause{Field: v.Field, Message: v.Message})
	}
	return e
}

// WriteError writes e as the response.
func WriteError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, NewError(http.StatusInternalServerError, "encode response: "+err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// StoreError translates a store error into an API error about what (a
// description of the resource such as `MeshTrace "t" in mesh "default"`). An
// *Error passes through unchanged.
func StoreError(err error, what string) *Error {
	var (
		ie *resource.InvalidError
		ae *Error
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ie):
		return NewError(http.StatusBadRequest, what+" is invalid", ie.Violations...)
	case errors.Is(err, store.ErrNotFound):
		return NewError(http.StatusNotFound, what+" not found")
	case errors.Is(err, store.ErrAlreadyExists):
		return NewError(http.StatusConflict, what+" was created concurrently; read it and retry")
	case errors.Is(err, store.ErrConflict):
		return NewError(http.StatusConflict, what+" changed since it was read; read it again and retry")
	case errors.Is(err, store.ErrTooLarge):
		return NewError(http.StatusRequestEntityTooLarge, what+" is too large for the store")
	case errors.Is(err, store.ErrClosed):
		return NewError(http.StatusServiceUnavailable, "store closed: "+err.Error())
	}
	return NewError(http.StatusInternalServerError, err.Error())
}

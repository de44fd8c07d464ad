package headstart

import (
	"errors"
	"fmt"
)

// FieldError is a setting out of its range. Field names it as the
// configuration file does (snake case, dotted, with list indexes), so
// that a loader can point at the line.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// FieldErrors collects every setting out of its range; Err joins them.
type FieldErrors []error

// Add adds a FieldError.
func (fs *FieldErrors) Add(field, format string, args ...any) {
	*fs = append(*fs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Under adds the FieldErrors in err (one, or joined) with their fields
// prefixed by parent; other errors as they are.
func (fs *FieldErrors) Under(parent string, err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			fs.Under(parent, e)
		}
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		fs.Add(parent+"."+fe.Field, "%s", fe.Reason)
		return
	}
	*fs = append(*fs, err)
}

// Err is every error collected, joined; nil when there is none.
func (fs FieldErrors) Err() error { return errors.Join(fs...) }

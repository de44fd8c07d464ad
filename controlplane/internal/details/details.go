// Package details holds what the control workflows' Web UI details share:
// the Markdown tables are clipped to MaxRows rows, and long stage names are
// shortened from the left, where workflow types repeat.
package details

// MaxRows keeps a workflow's current details short: the Web UI panel clips.
const MaxRows = 20

// Short keeps the last 48 characters of s.
func Short(s string) string {
	if len(s) > 48 {
		return "…" + s[len(s)-47:]
	}
	return s
}

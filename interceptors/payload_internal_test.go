package interceptors

import (
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// TestPayloadSizeMatchesTheConverter: the counting fast path gives exactly the
// Data length the SDK's default converter produces.
func TestPayloadSizeMatchesTheConverter(t *testing.T) {
	type shard struct {
		Name  string
		Seeds []uint64
		Tags  map[string]string
		HTML  string
	}
	values := []any{
		nil, 42, "héllo", []byte{1, 2, 3}, []string{"a", "b"},
		shard{Name: "x", Seeds: []uint64{1, 1 << 60}, Tags: map[string]string{"b": "2", "a": "1"}, HTML: "<a&b>"},
		&shard{}, map[string]int{"z": 1, "a": 2}, 3.25,
		&commonpb.WorkflowExecution{WorkflowId: "w", RunId: "r"},
	}
	dc := converter.GetDefaultDataConverter()
	for _, v := range values {
		pl, err := dc.ToPayload(v)
		if err != nil {
			t.Fatalf("ToPayload(%#v): %v", v, err)
		}
		if got, want := payloadSize(dc, v), int64(len(pl.GetData())); got != want {
			t.Errorf("payloadSize(%#v) = %d, want %d", v, got, want)
		}
	}
}

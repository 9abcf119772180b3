package deploycmd

import (
	"context"
	"errors"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/records"
)

// readOnly is a backend that only reports a recorded state: status and dry
// runs start nothing, and any change is refused.
type readOnly struct{ st serving.State }

var _ serving.Backend = readOnly{}

var errReadOnly = errors.New("read-only serving state (status or --dry-run)")

func (r readOnly) Deploy(context.Context, serving.Variant, records.ModelRef) error {
	return errReadOnly
}
func (r readOnly) Route(context.Context, int) error             { return errReadOnly }
func (r readOnly) Promote(context.Context) error                { return errReadOnly }
func (r readOnly) Abort(context.Context) error                  { return errReadOnly }
func (r readOnly) State(context.Context) (serving.State, error) { return r.st, nil }
func (r readOnly) Counters(context.Context, serving.Variant) (tfserving.Counters, error) {
	return tfserving.Counters{}, errReadOnly
}
func (r readOnly) Predict(context.Context, serving.Variant, []byte) (*tfserving.PredictResponse, error) {
	return nil, errReadOnly
}

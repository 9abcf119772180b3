package quickstart

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/serving"
	slocal "github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
)

// predictTicker is the ticker whose last test day the prediction is for.
const predictTicker = "AAPL"

// Prediction is the live prediction the quickstart makes through the gateway.
type Prediction struct {
	Ticker  string          `json:"ticker"`
	Date    string          `json:"date"`
	URL     string          `json:"url"`
	Request json.RawMessage `json:"request"`
	// Response is TF Serving's answer: {"predictions": [[p]]}.
	Response json.RawMessage `json:"response"`
	// Probability is P(the next trading day is a large move: |return| above
	// the ticker's 20-day σ); Actual is 1 when it was.
	Probability float64 `json:"probability"`
	Actual      int     `json:"actual"`
	Version     string  `json:"servedBy,omitempty"`
}

// datasetSchema is the part of prepare-data's schema.json the quickstart
// needs: the features in model input order with their normalization.
type datasetSchema struct {
	Features []struct {
		Name  string  `json:"name"`
		Index int     `json:"index"`
		Mean  float64 `json:"mean"`
		Std   float64 `json:"std"`
	} `json:"features"`
}

// sampleRequest builds a TF Serving predict body from the latest training
// run's test split: the last day of predictTicker, its features turned back
// into raw values (the server normalizes them itself).
func (r *run) sampleRequest(ctx context.Context) (body []byte, date string, actual int, err error) {
	raw, err := r.repo.show(ctx, "refs/heads/training", records.TrainingLockPath)
	if err != nil || raw == "" {
		return nil, "", 0, fmt.Errorf("no %s on training yet: %v", records.TrainingLockPath, err)
	}
	var rec records.RunRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return nil, "", 0, err
	}
	store, err := local.New(filepath.Join(r.env["BRANCHML_BACKENDS_STATE_DIR"], "pipelines"), nil)
	if err != nil {
		return nil, "", 0, err
	}
	defer store.Close()
	schemaRaw, err := store.Artifact(ctx, rec.RunID, "prepare-data", "dataset", "schema.json")
	if err != nil {
		return nil, "", 0, err
	}
	var schema datasetSchema
	if err := json.Unmarshal(schemaRaw, &schema); err != nil {
		return nil, "", 0, fmt.Errorf("schema.json: %w", err)
	}
	testCSV, err := store.Artifact(ctx, rec.RunID, "prepare-data", "dataset", "test.csv")
	if err != nil {
		return nil, "", 0, err
	}
	rows, err := csv.NewReader(bytes.NewReader(testCSV)).ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, "", 0, fmt.Errorf("test.csv: %v", err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	var last []string
	for _, row := range rows[1:] {
		if row[col["ticker"]] == predictTicker {
			last = row
		}
	}
	if last == nil {
		return nil, "", 0, fmt.Errorf("test.csv has no %s rows", predictTicker)
	}
	features := make([]float64, len(schema.Features))
	for _, f := range schema.Features {
		z, err := strconv.ParseFloat(last[col[f.Name]], 64)
		if err != nil {
			return nil, "", 0, fmt.Errorf("test.csv %s: %w", f.Name, err)
		}
		features[f.Index] = z*f.Std + f.Mean
	}
	actual, _ = strconv.Atoi(last[col["label"]])
	body, err = json.Marshal(map[string]any{"instances": [][]float64{features}})
	return body, last[col["date"]], actual, err
}

// clusterReadyWait bounds the wait for the test bed's Service to answer.
const clusterReadyWait = 2 * time.Minute

// deployLoad is the deploy stage's load arguments: loadRate requests/s of
// predictBody.
func (r *run) deployLoad(ctx context.Context) (map[string]any, error) {
	body, err := r.predictBody(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{"load": loadRate, "load-body": body}, nil
}

// predictBody is the request body the deploy stage's load uses.
func (r *run) predictBody(ctx context.Context) (string, error) {
	body, _, _, err := r.sampleRequest(ctx)
	return string(body), err
}

// serving makes sure the model's serving plane runs: the one that runs
// already (a `branchml serve`, or the plane a by-hand deploy started: the
// quickstart then uses it and leaves it running), else one this process
// hosts until the quickstart ends (with --serve, until Ctrl-C). Every
// deploy stage, in this process or run by hand meanwhile, uses that one
// gateway.
func (r *run) serving(ctx context.Context, cfg *config.Config) (*slocal.Backend, string, error) {
	if r.gw != nil {
		return r.gw, r.gw.URL(), nil
	}
	owner := "branchml quickstart"
	if r.opt.Serve {
		owner += " --serve"
	}
	b, err := slocal.New(cfg.Deploy.Model, nil, slocal.WithStateDir(r.env["BRANCHML_BACKENDS_STATE_DIR"]), slocal.WithAddr(cfg.Backends.Serving.Addr),
		slocal.WithLogger(r.log), slocal.WithHost(), slocal.WithOwner(owner))
	if err != nil {
		return nil, "", err
	}
	url, err := b.Start(ctx)
	if err != nil {
		return nil, "", err
	}
	r.gw = b
	if !b.Hosted() {
		r.progress("serving plane of %s: %s, run by %s (left running at the end)", cfg.Deploy.Model, url, b.Owner())
	}
	return b, url, nil
}

// predict sends one predict request through the gateway, or on the test
// bed through the model's Service (via the API server's proxy), retrying
// there temporary failures (the API server's 503 while the Service has no
// ready pod: the node has just started again and its pods with it) for up
// to clusterReadyWait.
func (r *run) predict(ctx context.Context, url, model string) (*Prediction, error) {
	body, date, actual, err := r.sampleRequest(ctx)
	if err != nil {
		return nil, err
	}
	opts := []tfserving.Option{tfserving.WithTimeout(5 * time.Second)}
	if r.kube != nil {
		opts = append(opts, tfserving.WithHTTPClient(r.kube.hc))
	}
	c, err := tfserving.New(url, opts...)
	if err != nil {
		return nil, err
	}
	resp, err := c.Predict(ctx, model, tfserving.Selector{}, body)
	for deadline := time.Now().Add(clusterReadyWait); err != nil && r.kube != nil && serving.IsTemporary(err) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		resp, err = c.Predict(ctx, model, tfserving.Selector{}, body)
	}
	if err != nil {
		return nil, err
	}
	var preds [][]float64
	if err := json.Unmarshal(resp.Predictions, &preds); err != nil || len(preds) != 1 || len(preds[0]) != 1 {
		return nil, fmt.Errorf("unexpected predictions %s", resp.Predictions)
	}
	answer, _ := json.Marshal(resp)
	return &Prediction{Ticker: predictTicker, Date: date, URL: url + "/v1/models/" + model + ":predict",
		Request: body, Response: answer, Probability: preds[0][0], Actual: actual}, nil
}

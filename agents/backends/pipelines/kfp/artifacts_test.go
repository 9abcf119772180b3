package kfp

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/mlmd"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp/objectstore"
	fake "github.com/branchml/branchml/agents/internal/fake/kfp"
	fakemlmd "github.com/branchml/branchml/agents/internal/fake/mlmd"
	fakes3 "github.com/branchml/branchml/agents/internal/fake/s3"
)

const metricsJSON = `{"validation":{"auc":0.58,"log_loss":0.69}}`

// world is a fake KFP 2.x: the API server, its ML Metadata and the
// pipeline root's object store, and a run of a version whose spec is
// pipelineInfo.name "p".
type world struct {
	kfp   *fake.Server
	md    *fakemlmd.Server
	s3    *fakes3.Server
	l     *fake.Launcher
	run   fake.Run
	log   *bytes.Buffer
	store *objectstore.Store
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{kfp: fake.New(), s3: fakes3.New("minio", "minio123", "mlpipeline"), log: &bytes.Buffer{}}
	t.Cleanup(w.kfp.Close)
	t.Cleanup(w.s3.Close)
	md, err := fakemlmd.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(md.Close)
	w.md = md
	w.l = &fake.Launcher{MLMD: md, S3: w.s3, Root: objectstore.DefaultPipelineRoot}
	pid := w.kfp.AddPipeline("djia30-sentiment", "")
	vid := w.kfp.AddVersion(pid, "v1", "", testSpec)
	c := newClient(t, w.kfp)
	r, err := c.CreateRun(context.Background(), pipelines.RunRequest{Experiment: "e", DisplayName: "r", PipelineID: pid, VersionID: vid})
	if err != nil {
		t.Fatal(err)
	}
	w.run, _ = w.kfp.Run(r.ID)
	w.store, err = objectstore.New(objectstore.Config{Endpoint: w.s3.URL, AccessKeyID: "minio", SecretAccessKey: "minio123"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) client(t *testing.T, withMLMD, withStore bool) *Client {
	t.Helper()
	log := logrus.New()
	log.Out = w.log
	log.Formatter = &logrus.TextFormatter{DisableTimestamp: true}
	opts := []Option{WithLogger(log)}
	if withMLMD {
		m, err := mlmd.Dial(w.md.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		opts = append(opts, WithMetadata(m))
	}
	if withStore {
		opts = append(opts, WithObjectStore(w.store))
	}
	return newClient(t, w.kfp, opts...)
}

func (w *world) record(t *testing.T, o fake.Output) (string, int64) {
	t.Helper()
	uri, id, err := w.l.Record(w.run, "p", o)
	if err != nil {
		t.Fatal(err)
	}
	return uri, id
}

// A container component writes metrics.json to its output's path: the
// launcher uploads the file and ML Metadata records its URI only.
func TestArtifactFromMLMDAndObjectStore(t *testing.T) {
	w := newWorld(t)
	w.record(t, fake.Output{Task: "prepare-data", Name: "dataset", Type: "system.Dataset", Files: map[string][]byte{"": []byte("csv")}})
	uri, _ := w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(metricsJSON)}})
	b, err := w.client(t, true, true).Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	if err != nil || string(b) != metricsJSON {
		t.Fatalf("artifact = %q, %v", b, err)
	}
	if want := "minio://mlpipeline/v2/artifacts/p/" + w.run.ID + "/train/b7c1e0a4-train/metrics"; uri != want {
		t.Errorf("uri %s", uri)
	}
	calls := strings.Join(w.md.Calls(), ",")
	if calls != "GetContextByTypeAndName system.PipelineRun/"+w.run.ID+",GetExecutionsByContext,GetEventsByExecutionIDs,GetArtifactsByID" {
		t.Errorf("ML Metadata calls: %s", calls)
	}
	if got := w.s3.Requests(); len(got) != 1 || got[0] != "GET /mlpipeline/v2/artifacts/p/"+w.run.ID+"/train/b7c1e0a4-train/metrics" {
		t.Errorf("object store requests: %v", got)
	}
}

// Python components log metrics (Metrics.log_metric): the launcher puts
// them in the artifact's custom properties and writes no file.
func TestMetricsFromCustomProperties(t *testing.T) {
	w := newWorld(t)
	w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Metadata: map[string]any{"validation.auc": 0.58, "validation.log_loss": 0.69, "accuracy": 0.55}})
	b, err := w.client(t, true, false).Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	if err != nil || string(b) != `{"accuracy":0.55,"validation":{"auc":0.58,"log_loss":0.69}}` {
		t.Fatalf("artifact = %s, %v", b, err)
	}
}

// A server that lists the task's output artifact IDs in run_details: they
// are resolved by ID, without looking for the run's context.
func TestArtifactIDsFromRunDetails(t *testing.T) {
	w := newWorld(t)
	_, id := w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(metricsJSON)}})
	w.kfp.SetTaskOutputs(w.run.ID, "train", "metrics", strconv.FormatInt(id, 10))
	b, err := w.client(t, true, true).Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	if err != nil || string(b) != metricsJSON {
		t.Fatalf("artifact = %q, %v", b, err)
	}
	if calls := strings.Join(w.md.Calls(), ","); calls != "GetArtifactsByID" {
		t.Errorf("ML Metadata calls: %s", calls)
	}
}

// When ML Metadata does not answer, the output is found in the run's
// folder of the pipeline root (the pipeline's name from the version's spec).
func TestFallbackWhenMLMDUnreachable(t *testing.T) {
	w := newWorld(t)
	w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(metricsJSON)}})
	w.md.Fail("", codes.Unavailable, 0)
	b, err := w.client(t, true, true).Artifact(context.Background(), w.run.ID, "train", "metrics", "metrics.json")
	if err != nil || string(b) != metricsJSON {
		t.Fatalf("artifact = %q, %v", b, err)
	}
	for _, want := range []string{"cannot be reached", "looking for output metrics of task train of run " + w.run.ID + " in the pipeline root instead",
		"read from s3://mlpipeline/v2/artifacts/p/" + w.run.ID + "/train/b7c1e0a4-train/metrics"} {
		if !strings.Contains(w.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, w.log)
		}
	}
	// Without ML Metadata configured at all: the same.
	b, err = w.client(t, false, true).Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	if err != nil || string(b) != metricsJSON {
		t.Fatalf("object store only: %q, %v", b, err)
	}
}

func TestDirectoryArtifact(t *testing.T) {
	w := newWorld(t)
	w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Artifact", Files: map[string][]byte{"metrics.json": []byte(metricsJSON), "curve.csv": []byte("1,2")}})
	c := w.client(t, true, true)
	b, err := c.Artifact(context.Background(), w.run.ID, "train", "metrics", "metrics.json")
	if err != nil || string(b) != metricsJSON {
		t.Fatalf("artifact = %q, %v", b, err)
	}
	_, err = c.Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	if err == nil || !strings.Contains(err.Error(), "is a directory of 2 files (curve.csv, metrics.json): name the file") {
		t.Errorf("err = %v", err)
	}
}

// Every miss names the task, the artifact and where it looked.
func TestArtifactMissesSayWhere(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	_, err := w.client(t, true, true).Artifact(ctx, w.run.ID, "train", "metrics", "")
	if !errors.Is(err, pipelines.ErrNotFound) || err.Error() != "output metrics of task train of run "+w.run.ID+": ML Metadata at "+w.md.Addr+
		" has no system.PipelineRun context \""+w.run.ID+"\" (the run recorded nothing there: is this the ML Metadata of the KFP that ran it?): not found" {
		t.Errorf("no run context: %v", err)
	}
	w.record(t, fake.Output{Task: "train", Name: "model", Type: "system.Model", Files: map[string][]byte{"": []byte("m")}})
	_, err = w.client(t, true, true).Artifact(ctx, w.run.ID, "train", "metrics", "")
	if !errors.Is(err, pipelines.ErrNotFound) || !strings.Contains(err.Error(), "task train has no output \"metrics\" (outputs: model)") {
		t.Errorf("no such output: %v", err)
	}
	_, err = w.client(t, true, true).Artifact(ctx, w.run.ID, "evaluate", "metrics", "")
	if !errors.Is(err, pipelines.ErrNotFound) || !strings.Contains(err.Error(), "has no execution of task evaluate") {
		t.Errorf("no such task: %v", err)
	}
	// Recorded in ML Metadata, but the file is not in the object store.
	uri, _ := w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics"})
	_, err = w.client(t, true, true).Artifact(ctx, w.run.ID, "train", "metrics", "")
	key := strings.TrimPrefix(uri, "minio://mlpipeline/")
	if !errors.Is(err, pipelines.ErrNotFound) || !strings.Contains(err.Error(), "s3://mlpipeline/"+key+" at "+w.s3.URL+": NoSuchKey") {
		t.Errorf("no file: %v", err)
	}
	_, err = w.client(t, false, true).Artifact(ctx, w.run.ID, "evaluate", "metrics", "")
	if !errors.Is(err, pipelines.ErrNotFound) || !strings.Contains(err.Error(), "(ML Metadata not configured) in the pipeline root: no object metrics below s3://mlpipeline/v2/artifacts/p/"+w.run.ID+"/evaluate/ at "+w.s3.URL) {
		t.Errorf("fallback miss: %v", err)
	}
	_, err = w.client(t, false, false).Artifact(ctx, w.run.ID, "train", "metrics", "")
	if !errors.Is(err, ErrNoArtifactStore) {
		t.Errorf("nothing configured: %v", err)
	}
}

func TestObjectStoreCredentialsAndBucket(t *testing.T) {
	w := newWorld(t)
	uri, _ := w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(metricsJSON)}})
	bad, _ := objectstore.New(objectstore.Config{Endpoint: w.s3.URL, AccessKeyID: "nobody", SecretAccessKey: "x"})
	_, err := bad.Read(context.Background(), uri, "")
	if err == nil || !strings.Contains(err.Error(), "InvalidAccessKeyId (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") {
		t.Errorf("bad key: %v", err)
	}
	other, _ := objectstore.New(objectstore.Config{Endpoint: w.s3.URL, Bucket: "team-a", AccessKeyID: "minio", SecretAccessKey: "minio123"})
	_, err = other.Read(context.Background(), uri, "")
	if err == nil || !strings.Contains(err.Error(), "is in bucket mlpipeline, but backends.pipelines.objectStore.bucket is team-a") {
		t.Errorf("other bucket: %v", err)
	}
	for _, u := range []string{"gs://b/k", "b/k", "minio:///k"} {
		if _, _, err := objectstore.ParseURI(u); err == nil {
			t.Errorf("ParseURI(%q) accepted", u)
		}
	}
	if b, k, err := objectstore.ParseURI("s3://bkt/a/b?region=x"); err != nil || b != "bkt" || k != "a/b" {
		t.Errorf("ParseURI = %q %q %v", b, k, err)
	}
}

// An ML Metadata server that is down (connection refused) is "cannot be
// reached" too: the pipeline root is searched.
func TestFallbackWhenMLMDIsDown(t *testing.T) {
	w := newWorld(t)
	w.record(t, fake.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(metricsJSON)}})
	c := w.client(t, true, true)
	w.md.Close()
	b, err := c.Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	if err != nil || string(b) != metricsJSON || !strings.Contains(w.log.String(), "ML Metadata at "+w.md.Addr+" cannot be reached") {
		t.Fatalf("artifact = %q, %v\n%s", b, err, w.log)
	}
	// Without an object store to fall back to, the error says both.
	_, err = w.client(t, true, false).Artifact(context.Background(), w.run.ID, "train", "metrics", "")
	var ue *mlmd.UnreachableError
	if !errors.As(err, &ue) {
		t.Errorf("err = %v", err)
	}
}

package kfp

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	fake "github.com/branchml/branchml/agents/internal/fake/kfp"
)

func posts(s *fake.Server, suffix string) int {
	n := 0
	for _, c := range s.Calls() {
		if strings.HasPrefix(c, "POST ") && strings.Contains(c, suffix) {
			n++
		}
	}
	return n
}

// A 2xx upload reply whose created_at the generated client cannot decode
// (kubeflow/pipelines #2764, #3686): the version was created, so it is
// looked up by name; nothing is uploaded twice.
func TestMalformedUploadReplyLooksUpByName(t *testing.T) {
	s := faulty(t, fake.On("POST", "upload_version$", 1, fake.BadTimestamps()))
	c := newClient(t, s)
	v, err := c.UploadVersion(context.Background(), upload())
	if err != nil {
		t.Fatal(err)
	}
	vs := s.Versions("")
	if len(vs) != 1 || v.VersionID != vs[0].ID || !v.Created || v.SpecHash != testHash {
		t.Errorf("version %+v; stored %+v", v, vs)
	}
	if n := posts(s, "upload_version"); n != 1 {
		t.Errorf("%d uploads, want 1", n)
	}
	// The same for a malformed create-pipeline reply.
	s2 := faulty(t, fake.On("POST", "^/apis/v2beta1/pipelines$", 1, fake.BadTimestamps()))
	v, err = newClient(t, s2).UploadVersion(context.Background(), upload())
	if err != nil || len(s2.Pipelines()) != 1 || v.PipelineID != s2.Pipelines()[0].ID || posts(s2, "/pipelines?") != 0 {
		t.Fatalf("pipeline: %+v, %v, %d pipelines", v, err, len(s2.Pipelines()))
	}
}

func TestMalformedCreateRunReplyLooksUpByName(t *testing.T) {
	s, c, v := uploaded(t)
	ctx := context.Background()
	s.Inject(fake.On("POST", "^/apis/v2beta1/(runs|experiments)$", 0, fake.BadTimestamps()))
	run, err := c.CreateRun(ctx, pipelines.RunRequest{Experiment: "e", DisplayName: "r", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if err != nil {
		t.Fatal(err)
	}
	runs := s.Runs()
	if len(runs) != 1 || run.ID != runs[0].ID || len(s.Experiments()) != 1 || posts(s, "/runs") != 1 {
		t.Errorf("run %+v; runs %d, experiments %d, creates %d", run, len(runs), len(s.Experiments()), posts(s, "/runs"))
	}
}

// Two clients create the same run at once while CreateRun takes 300ms:
// both list no run, both create one; the check after the create makes
// both keep the same (older) run and terminates the other.
func TestConcurrentCreateRunKeepsOne(t *testing.T) {
	s := fake.New(fake.WithCreateRunDelay(300*time.Millisecond), fake.WithRunStates("RUNNING"))
	defer s.Close()
	ctx := context.Background()
	v, err := newClient(t, s).UploadVersion(ctx, upload())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newClient(t, s).EnsureExperiment(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := newClient(t, s).CreateRun(ctx, pipelines.RunRequest{Experiment: "e", DisplayName: "djia30-0123456789ab", PipelineID: v.PipelineID, VersionID: v.VersionID})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = r.ID
		}()
	}
	wg.Wait()
	runs := s.Runs()
	if len(runs) != 2 || ids[0] != ids[1] || ids[0] != runs[0].ID {
		t.Fatalf("ids %v; runs %+v", ids, runs)
	}
	if runs[0].State() != "RUNNING" || runs[1].State() != "CANCELING" {
		t.Errorf("states %s, %s; want the winner RUNNING and the duplicate terminated", runs[0].State(), runs[1].State())
	}
}

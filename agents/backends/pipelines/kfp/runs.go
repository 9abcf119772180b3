package kfp

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/experiment_client/experiment_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/experiment_model"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_client/run_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/run_model"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// EnsureExperiment finds the experiment called name in the client's
// namespace or creates it (a duplicate-name answer is looked up again) and
// returns its ID.
func (c *Client) EnsureExperiment(ctx context.Context, name string) (string, error) {
	name = pipelines.ShortName(name)
	find := func() (string, error) {
		id := ""
		err := c.call(ctx, "list experiments", func(ctx context.Context) error {
			p := experiment_service.NewListExperimentsParamsWithContext(ctx)
			f := eqFilter("display_name", name)
			p.Filter = &f
			if c.o.namespace != "" {
				p.Namespace = &c.o.namespace
			}
			res, err := c.experiments.ListExperiments(p)
			if err != nil {
				return err
			}
			for _, e := range res.Payload.Experiments {
				if e != nil && e.DisplayName == name {
					id = e.ExperimentID
				}
			}
			return nil
		})
		return id, err
	}
	id, err := find()
	if err != nil || id != "" {
		return id, err
	}
	err = c.call(ctx, "create experiment", func(ctx context.Context) error {
		p := experiment_service.NewCreateExperimentParamsWithContext(ctx)
		p.Body = &experiment_model.V2beta1Experiment{DisplayName: name, Namespace: c.o.namespace}
		res, err := c.experiments.CreateExperiment(p)
		if err != nil {
			return err
		}
		id = res.Payload.ExperimentID
		return nil
	})
	var ae *APIError
	var re *ResponseError
	if errors.As(err, &re) || (errors.As(err, &ae) && ae.AlreadyExists()) {
		cause := err
		id, err = find()
		if err == nil && id == "" && re != nil {
			err = fmt.Errorf("%w; and no experiment of that name is listed", cause)
		}
		if err == nil && id == "" {
			err = fmt.Errorf("experiment %q: the server says it exists but lists none by that name: %w", name, cause)
		}
	}
	if err != nil {
		return "", fmt.Errorf("ensure experiment %q: %w", name, err)
	}
	return id, nil
}

// findRuns returns the runs called name in experiment exp of version vid
// (all pages), the one that won a concurrent create first: the oldest
// created_at, then the smallest run ID (see CreateRun).
func (c *Client) findRuns(ctx context.Context, exp, name, vid string) ([]*run_model.V2beta1Run, error) {
	var found []*run_model.V2beta1Run
	token := ""
	for {
		var res *run_service.ListRunsOK
		err := c.call(ctx, "list runs", func(ctx context.Context) error {
			p := run_service.NewListRunsParamsWithContext(ctx)
			p.ExperimentID = &exp
			f := eqFilter("display_name", name)
			p.Filter = &f
			size := int32(100)
			p.PageSize = &size
			if token != "" {
				p.PageToken = &token
			}
			var err error
			res, err = c.runs.ListRuns(p, c.auth)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, r := range res.Payload.Runs {
			if r != nil && r.DisplayName == name && (r.PipelineVersionReference == nil || r.PipelineVersionReference.PipelineVersionID == vid) {
				found = append(found, r)
			}
		}
		if token = res.Payload.NextPageToken; token == "" {
			break
		}
	}
	sort.SliceStable(found, func(i, j int) bool {
		ti, tj := time.Time(found[i].CreatedAt), time.Time(found[j].CreatedAt)
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return found[i].RunID < found[j].RunID
	})
	return found, nil
}

// findRun returns the winning run called name in experiment exp of
// version vid, or nil.
func (c *Client) findRun(ctx context.Context, exp, name, vid string) (*run_model.V2beta1Run, error) {
	runs, err := c.findRuns(ctx, exp, name, vid)
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	return runs[0], nil
}

// CreateRun starts a run of r.VersionID in experiment r.Experiment
// (created when absent). It is idempotent by display name, which callers
// make deterministic (branchml-train: "<project>-<commit12>[-r<N>]"): when
// the experiment already has a run of that name and version, that run is
// returned; a create that timed out is looked up before it is retried; a
// create whose 2xx reply cannot be decoded is looked up instead of
// repeated. After a create the runs of that name are listed again: when
// two clients created one each at the same time, both keep the same one
// (the oldest created_at, then the smallest run ID) and the loser
// terminates its own, so one run goes on.
func (c *Client) CreateRun(ctx context.Context, r pipelines.RunRequest) (*pipelines.Run, error) {
	name := pipelines.ShortName(r.DisplayName)
	if name == "" || r.VersionID == "" || r.Experiment == "" {
		return nil, errors.New("create run: display name, experiment and version ID are required")
	}
	exp, err := c.EnsureExperiment(ctx, r.Experiment)
	if err != nil {
		return nil, err
	}
	if existing, err := c.findRun(ctx, exp, name, r.VersionID); err != nil || existing != nil {
		if err != nil {
			return nil, fmt.Errorf("create run %q: %w", name, err)
		}
		return c.toRun(existing), nil
	}
	var created *run_model.V2beta1Run
	attempt := 0
	err = c.call(ctx, "create run", func(actx context.Context) error {
		attempt++
		if attempt > 1 { // the previous try may have reached the server
			if existing, err := c.findRun(ctx, exp, name, r.VersionID); err != nil || existing != nil {
				created = existing
				return err
			}
		}
		p := run_service.NewCreateRunParamsWithContext(actx)
		p.Body = &run_model.V2beta1Run{
			DisplayName:              name,
			ExperimentID:             exp,
			PipelineVersionReference: &run_model.V2beta1PipelineVersionReference{PipelineID: r.PipelineID, PipelineVersionID: r.VersionID},
			RuntimeConfig:            &run_model.V2beta1RuntimeConfig{Parameters: r.Parameters},
		}
		res, err := c.runs.CreateRun(p, c.auth)
		if err != nil {
			return err
		}
		created = res.Payload
		return nil
	})
	var re *ResponseError
	if errors.As(err, &re) {
		c.o.log.Warnf("%v; looking the run up by name", err)
		created, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create run %q of version %s: %w", name, r.VersionID, err)
	}
	return c.settle(ctx, exp, name, r.VersionID, created, re)
}

// settle lists the runs called name after a create of mine (nil when its
// reply was unreadable, cause) and returns the winner; mine is terminated
// when it lost.
func (c *Client) settle(ctx context.Context, exp, name, vid string, mine *run_model.V2beta1Run, cause error) (*pipelines.Run, error) {
	runs, err := c.findRuns(ctx, exp, name, vid)
	if err != nil {
		if mine != nil {
			c.o.log.Warnf("run %s created, but listing runs called %q again failed: %v", mine.RunID, name, err)
			return c.toRun(mine), nil
		}
		return nil, fmt.Errorf("create run %q: %w; and looking it up: %v", name, cause, err)
	}
	if len(runs) == 0 {
		if mine != nil {
			return c.toRun(mine), nil // not listed yet
		}
		return nil, fmt.Errorf("create run %q: %w; and no run of that name is listed", name, cause)
	}
	win := runs[0]
	if mine != nil && mine.RunID != win.RunID {
		c.o.log.Warnf("run %q was created twice at once (%s and %s): keeping %s, terminating %s", name, win.RunID, mine.RunID, win.RunID, mine.RunID)
		if err := c.CancelRun(ctx, mine.RunID); err != nil {
			c.o.log.Errorf("terminate duplicate run %s: %v", mine.RunID, err)
		}
	}
	return c.toRun(win), nil
}

func (c *Client) getRun(ctx context.Context, id string) (*run_model.V2beta1Run, error) {
	var run *run_model.V2beta1Run
	err := c.call(ctx, "get run", func(ctx context.Context) error {
		p := run_service.NewGetRunParamsWithContext(ctx)
		p.RunID = id
		res, err := c.runs.GetRun(p, c.auth)
		if err != nil {
			return err
		}
		run = res.Payload
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return run, nil
}

// GetRun returns the run's current state and tasks; the error matches
// pipelines.ErrNotFound for an unknown run.
func (c *Client) GetRun(ctx context.Context, id string) (*pipelines.Run, error) {
	run, err := c.getRun(ctx, id)
	if err != nil {
		return nil, err
	}
	return c.toRun(run), nil
}

// CancelRun terminates the run (it goes CANCELING, then CANCELED).
func (c *Client) CancelRun(ctx context.Context, id string) error {
	err := c.call(ctx, "terminate run", func(ctx context.Context) error {
		p := run_service.NewTerminateRunParamsWithContext(ctx)
		p.RunID = id
		_, err := c.runs.TerminateRun(p, c.auth)
		return err
	})
	if err != nil {
		return fmt.Errorf("cancel run %s: %w", id, err)
	}
	return nil
}

func (c *Client) toRun(r *run_model.V2beta1Run) *pipelines.Run {
	out := &pipelines.Run{
		ID: r.RunID, DisplayName: r.DisplayName, ExperimentID: r.ExperimentID, State: string(r.State),
		CreatedAt: time.Time(r.CreatedAt), FinishedAt: time.Time(r.FinishedAt),
	}
	if out.State == "" {
		out.State = pipelines.StatePending
	}
	if r.Error != nil {
		out.Error = r.Error.Message
	}
	if r.RunDetails != nil {
		for _, t := range r.RunDetails.TaskDetails {
			if t == nil {
				continue
			}
			task := pipelines.Task{Name: t.DisplayName, State: string(t.State)}
			if t.Error != nil {
				task.Error = t.Error.Message
			}
			out.Tasks = append(out.Tasks, task)
		}
	}
	u := *c.endpoint
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	u.Fragment = "/runs/details/" + r.RunID
	out.URL = u.String()
	return out
}

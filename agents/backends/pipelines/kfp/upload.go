package kfp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_client/pipeline_service"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_model"
	"github.com/kubeflow/pipelines/backend/api/v2beta1/go_http_client/pipeline_upload_client/pipeline_upload_service"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// HashMarker starts the line of a version's description that holds the
// spec hash: "branchml-spec-hash: sha256:<hex>".
const HashMarker = "branchml-spec-hash: "

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// Pipeline is a KFP pipeline as found.
type Pipeline struct {
	ID, Name, Namespace string
}

// FindPipeline returns the pipeline with display name name (shortened with
// ShortName) in the client's namespace, or nil.
func (c *Client) FindPipeline(ctx context.Context, name string) (*Pipeline, error) {
	name = pipelines.ShortName(name)
	var found *Pipeline
	err := c.call(ctx, "list pipelines", func(ctx context.Context) error {
		found = nil
		p := pipeline_service.NewListPipelinesParamsWithContext(ctx)
		f := eqFilter("display_name", name)
		p.Filter = &f
		if c.o.namespace != "" {
			p.Namespace = &c.o.namespace
		}
		res, err := c.pipelines.ListPipelines(p, c.auth)
		if err != nil {
			return err
		}
		for _, x := range res.Payload.Pipelines {
			if x != nil && x.DisplayName == name {
				found = &Pipeline{ID: x.PipelineID, Name: x.DisplayName, Namespace: x.Namespace}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find pipeline %q: %w", name, err)
	}
	return found, nil
}

// EnsurePipeline finds the pipeline called name or creates it (without a
// version); a duplicate-name answer (409, or 500 "already exists" from
// older servers) means someone created it meanwhile: it is looked up again.
func (c *Client) EnsurePipeline(ctx context.Context, name, description string) (*Pipeline, error) {
	name = pipelines.ShortName(name)
	p, err := c.FindPipeline(ctx, name)
	if err != nil || p != nil {
		return p, err
	}
	err = c.call(ctx, "create pipeline", func(ctx context.Context) error {
		params := pipeline_service.NewCreatePipelineParamsWithContext(ctx)
		params.Body = &pipeline_model.V2beta1Pipeline{DisplayName: name, Description: description, Namespace: c.o.namespace}
		res, err := c.pipelines.CreatePipeline(params, c.auth)
		if err != nil {
			return err
		}
		p = &Pipeline{ID: res.Payload.PipelineID, Name: res.Payload.DisplayName, Namespace: res.Payload.Namespace}
		return nil
	})
	var ae *APIError
	var re *ResponseError
	if errors.As(err, &re) {
		// The server answered 2xx: the pipeline was created, its reply is unreadable.
		c.o.log.Warnf("%v; looking the pipeline up by name", err)
		found, ferr := c.FindPipeline(ctx, name)
		if ferr == nil && found == nil {
			ferr = fmt.Errorf("create pipeline %q: %w; and no pipeline of that name is listed", name, err)
		}
		return found, ferr
	}
	if errors.As(err, &ae) && ae.AlreadyExists() {
		c.o.log.Infof("pipeline %q already exists (%d); looking it up", name, ae.StatusCode)
		p, err = c.FindPipeline(ctx, name)
		if err == nil && p == nil {
			err = fmt.Errorf("pipeline %q: the server says it exists but lists none by that name: %w", name, ae)
		}
		return p, err
	}
	if err != nil {
		return nil, fmt.Errorf("create pipeline %q: %w", name, err)
	}
	if p.ID == "" {
		return nil, fmt.Errorf("create pipeline %q: %w", name, &ResponseError{Op: "create pipeline", Err: errors.New("no pipeline_id in the answer")})
	}
	return p, nil
}

// ListVersions returns every version of pipeline id (all pages), oldest
// first as the server sorts them by created_at.
func (c *Client) ListVersions(ctx context.Context, pipelineID string) ([]*pipeline_model.V2beta1PipelineVersion, error) {
	var out []*pipeline_model.V2beta1PipelineVersion
	token := ""
	for {
		var res *pipeline_service.ListPipelineVersionsOK
		err := c.call(ctx, "list pipeline versions", func(ctx context.Context) error {
			p := pipeline_service.NewListPipelineVersionsParamsWithContext(ctx)
			p.PipelineID = pipelineID
			size := int32(100)
			p.PageSize = &size
			if token != "" {
				p.PageToken = &token
			}
			var err error
			res, err = c.pipelines.ListPipelineVersions(p, c.auth)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list versions of pipeline %s: %w", pipelineID, err)
		}
		out = append(out, res.Payload.PipelineVersions...)
		token = res.Payload.NextPageToken
		if token == "" {
			return out, nil
		}
	}
}

// VersionHash returns the spec hash recorded in a version's description ("" when none).
func VersionHash(description string) string {
	for _, line := range strings.Split(description, "\n") {
		if h, ok := strings.CutPrefix(strings.TrimSpace(line), HashMarker); ok {
			return strings.TrimSpace(h)
		}
	}
	return ""
}

// versionDescription is the description with the hash line appended.
func versionDescription(desc, hash string) string {
	if desc == "" {
		return HashMarker + hash
	}
	return desc + "\n" + HashMarker + hash
}

func toVersion(p *Pipeline, v *pipeline_model.V2beta1PipelineVersion, created bool) *pipelines.Version {
	return &pipelines.Version{
		PipelineID: p.ID, PipelineName: p.Name, VersionID: v.PipelineVersionID, VersionName: v.DisplayName,
		SpecHash: VersionHash(v.Description), CreatedAt: time.Time(v.CreatedAt), Created: created,
	}
}

// FindVersion returns the newest version of the pipeline whose description
// records hash, or nil.
func (c *Client) FindVersion(ctx context.Context, p *Pipeline, hash string) (*pipelines.Version, error) {
	vs, err := c.ListVersions(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i] != nil && VersionHash(vs[i].Description) == hash {
			return toVersion(p, vs[i], false), nil
		}
	}
	return nil, nil
}

// LatestVersion returns the newest version of the pipeline called name and
// its pipeline spec as JSON (nil, nil when the pipeline or version does not
// exist). Dry runs diff against it.
func (c *Client) LatestVersion(ctx context.Context, name string) (*pipelines.Version, []byte, error) {
	p, err := c.FindPipeline(ctx, name)
	if err != nil || p == nil {
		return nil, nil, err
	}
	vs, err := c.ListVersions(ctx, p.ID)
	if err != nil || len(vs) == 0 {
		return nil, nil, err
	}
	latest := vs[0]
	for _, v := range vs {
		if v != nil && time.Time(v.CreatedAt).After(time.Time(latest.CreatedAt)) {
			latest = v
		}
	}
	var spec []byte
	if latest.PipelineSpec != nil {
		spec, _ = json.Marshal(latest.PipelineSpec)
	}
	return toVersion(p, latest, false), spec, nil
}

type namedReader struct {
	io.Reader
	name string
}

func (n namedReader) Close() error { return nil }
func (n namedReader) Name() string { return n.name }

// UploadVersion finds or creates the pipeline u.PipelineName, then uploads
// u.Spec as version u.VersionName (multipart upload_version) unless a
// version whose description records u.SpecHash exists (then Created is
// false). Names are shortened with ShortName first. A duplicate version
// name is looked up; it is accepted when it records the same hash.
func (c *Client) UploadVersion(ctx context.Context, u pipelines.Upload) (*pipelines.Version, error) {
	pname, vname := pipelines.ShortName(u.PipelineName), pipelines.ShortName(u.VersionName)
	switch {
	case pname == "":
		return nil, errors.New("upload: empty pipeline name")
	case vname == "":
		return nil, fmt.Errorf("upload to pipeline %q: empty version name", pname)
	case vname == pname:
		return nil, fmt.Errorf("upload to pipeline %q: the version name must differ from the pipeline's name (KFP gives that name to the pipeline's default version)", pname)
	case u.SpecHash == "":
		return nil, fmt.Errorf("upload %q: empty spec hash", vname)
	}
	p, err := c.EnsurePipeline(ctx, pname, u.Description)
	if err != nil {
		return nil, err
	}
	if v, err := c.FindVersion(ctx, p, u.SpecHash); err != nil || v != nil {
		return v, err
	}
	var created *uploadedVersion
	err = c.call(ctx, "upload pipeline version", func(ctx context.Context) error {
		params := pipeline_upload_service.NewUploadPipelineVersionParamsWithContext(ctx)
		params.Name = &vname
		params.Pipelineid = &p.ID
		desc := versionDescription(u.Description, u.SpecHash)
		params.Description = &desc
		params.Uploadfile = namedReader{Reader: bytes.NewReader(u.Spec), name: "pipeline.yaml"}
		res, err := c.uploads.UploadPipelineVersion(params, c.auth)
		if err != nil {
			return err
		}
		created = &uploadedVersion{ID: res.Payload.PipelineVersionID, Name: res.Payload.DisplayName, Description: res.Payload.Description, CreatedAt: res.Payload.CreatedAt}
		return nil
	})
	var ae *APIError
	var re *ResponseError
	if errors.As(err, &re) {
		// A 2xx reply the client cannot decode (kubeflow/pipelines #2764,
		// #3686): the version was created; find it, never upload twice.
		c.o.log.Warnf("%v; looking the version up by name", err)
		return c.uploadedVersion(ctx, p, vname, u.SpecHash, err)
	}
	if errors.As(err, &ae) && ae.AlreadyExists() {
		c.o.log.Infof("pipeline version %q already exists (%d); looking it up", vname, ae.StatusCode)
		vs, lerr := c.ListVersions(ctx, p.ID)
		if lerr != nil {
			return nil, lerr
		}
		for _, v := range vs {
			if v != nil && v.DisplayName == vname {
				if h := VersionHash(v.Description); h != u.SpecHash {
					return nil, fmt.Errorf("pipeline %q version %q exists with spec hash %q, not %s: %w", pname, vname, h, u.SpecHash, ae)
				}
				return toVersion(p, v, false), nil
			}
		}
		return nil, fmt.Errorf("pipeline %q version %q: the server says it exists but lists none by that name: %w", pname, vname, ae)
	}
	if err != nil {
		return nil, fmt.Errorf("upload pipeline %q version %q: %w", pname, vname, err)
	}
	return &pipelines.Version{
		PipelineID: p.ID, PipelineName: p.Name, VersionID: created.ID, VersionName: created.Name,
		SpecHash: u.SpecHash, CreatedAt: time.Time(created.CreatedAt), Created: true,
	}, nil
}

type uploadedVersion struct {
	ID, Name, Description string
	CreatedAt             strfmt.DateTime
}

// uploadedVersion finds version vname of p after an upload whose reply was
// unreadable (cause): it must record hash. It is reported as created.
func (c *Client) uploadedVersion(ctx context.Context, p *Pipeline, vname, hash string, cause error) (*pipelines.Version, error) {
	vs, err := c.ListVersions(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("upload pipeline %q version %q: %w; and looking it up: %v", p.Name, vname, cause, err)
	}
	for _, v := range vs {
		if v == nil || v.DisplayName != vname {
			continue
		}
		if h := VersionHash(v.Description); h != hash {
			return nil, fmt.Errorf("pipeline %q version %q exists with spec hash %q, not %s (after: %w)", p.Name, vname, h, hash, cause)
		}
		return toVersion(p, v, true), nil
	}
	return nil, fmt.Errorf("upload pipeline %q version %q: %w; and the server lists no version of that name", p.Name, vname, cause)
}

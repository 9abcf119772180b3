package jenkins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/bndr/gojenkins"
)

// Requester is gojenkins' JenkinsRequester with what its own Requester
// lacks: every non-2xx answer is an *APIError, endpoints stay escaped as
// given (branch names encoded as Jenkins does), and CSRF crumbs are fetched
// once, sent with the session cookie they are bound to (the http.Client keeps
// a cookie jar), and fetched afresh once after a 403.
type Requester struct {
	base        string
	hc          *http.Client
	user, token string

	mu         sync.Mutex
	crumbKnown bool // crumbIssuer was asked
	crumbField string
	crumb      string
}

var _ gojenkins.JenkinsRequester = (*Requester)(nil)

// crumbResponse is /crumbIssuer/api/json (hudson.security.csrf.DefaultCrumbIssuer).
type crumbResponse struct {
	Crumb             string `json:"crumb"`
	CrumbRequestField string `json:"crumbRequestField"`
}

func (r *Requester) fetchCrumb(ctx context.Context) error {
	var c crumbResponse
	_, body, err := r.do(ctx, http.MethodGet, "/crumbIssuer/api/json", nil, nil, "", false)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crumbKnown = true
	r.crumbField, r.crumb = "", ""
	if IsNotFound(err) {
		return nil // CSRF protection off, or API tokens need none
	}
	if err != nil {
		return fmt.Errorf("fetch CSRF crumb: %w", err)
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("fetch CSRF crumb: malformed answer: %w", err)
	}
	r.crumbField, r.crumb = c.CrumbRequestField, c.Crumb
	return nil
}

// do sends one request. endpoint is an escaped path below the base URL
// (e.g. "/job/ml/job/djia30/job/feature%252Fx/api/json"). POSTs carry the
// crumb when Jenkins has one; a 403 on a POST refreshes it once.
func (r *Requester) do(ctx context.Context, method, endpoint string, query map[string]string, body []byte, contentType string, crumb bool) (*http.Response, []byte, error) {
	if crumb {
		r.mu.Lock()
		known := r.crumbKnown
		r.mu.Unlock()
		if !known {
			if err := r.fetchCrumb(ctx); err != nil {
				return nil, nil, err
			}
		}
	}
	resp, data, err := r.send(ctx, method, endpoint, query, body, contentType, crumb)
	var ae *APIError
	if crumb && errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		// The crumb may have expired with its session: fetch a fresh one, once.
		if ferr := r.fetchCrumb(ctx); ferr != nil {
			return resp, data, err
		}
		return r.send(ctx, method, endpoint, query, body, contentType, crumb)
	}
	return resp, data, err
}

func (r *Requester) send(ctx context.Context, method, endpoint string, query map[string]string, body []byte, contentType string, crumb bool) (*http.Response, []byte, error) {
	u, err := url.Parse(r.base + endpoint)
	if err != nil {
		return nil, nil, fmt.Errorf("jenkins endpoint %q: %w", endpoint, err)
	}
	if len(query) > 0 {
		q := u.Query()
		for k, v := range query {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.user != "" {
		req.SetBasicAuth(r.user, r.token)
	}
	if crumb {
		r.mu.Lock()
		if r.crumbField != "" {
			req.Header.Set(r.crumbField, r.crumb)
		}
		r.mu.Unlock()
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, redactURL(u), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read answer: %w", method, redactURL(u), err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, data, newAPIError(method, redactURL(u), resp.StatusCode, resp.Header.Get("X-Error"), data)
	}
	return resp, data, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}

// apiPath appends "api/json" the way gojenkins' own Requester does.
func apiPath(endpoint string) string {
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	return endpoint + "api/json"
}

func decode(data []byte, into any) error {
	if into == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if s, ok := into.(*string); ok {
		*s = string(data)
		return nil
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("malformed JSON from Jenkins: %w", err)
	}
	return nil
}

// GetJSON implements gojenkins.JenkinsRequester: GET endpoint/api/json into response.
func (r *Requester) GetJSON(ctx context.Context, endpoint string, response any, query map[string]string) (*http.Response, error) {
	resp, data, err := r.do(ctx, http.MethodGet, apiPath(endpoint), query, nil, "", false)
	if err != nil {
		return resp, err
	}
	return resp, decode(data, response)
}

// Get implements gojenkins.JenkinsRequester: GET endpoint (a *string response gets the raw body).
func (r *Requester) Get(ctx context.Context, endpoint string, response any, query map[string]string) (*http.Response, error) {
	resp, data, err := r.do(ctx, http.MethodGet, endpoint, query, nil, "", false)
	if err != nil {
		return resp, err
	}
	return resp, decode(data, response)
}

// GetXML implements gojenkins.JenkinsRequester: GET endpoint, raw body into a *string.
func (r *Requester) GetXML(ctx context.Context, endpoint string, response any, query map[string]string) (*http.Response, error) {
	return r.Get(ctx, endpoint, response, query)
}

// Post implements gojenkins.JenkinsRequester: a form POST.
func (r *Requester) Post(ctx context.Context, endpoint string, payload io.Reader, response any, query map[string]string) (*http.Response, error) {
	return r.post(ctx, endpoint, payload, "application/x-www-form-urlencoded", response, query)
}

// PostJSON implements gojenkins.JenkinsRequester (form-encoded, as gojenkins sends it).
func (r *Requester) PostJSON(ctx context.Context, endpoint string, payload io.Reader, response any, query map[string]string) (*http.Response, error) {
	return r.post(ctx, apiPath(endpoint), payload, "application/x-www-form-urlencoded", response, query)
}

// PostXML implements gojenkins.JenkinsRequester: POST an XML document (config.xml, createItem).
func (r *Requester) PostXML(ctx context.Context, endpoint string, xml string, response any, query map[string]string) (*http.Response, error) {
	return r.post(ctx, endpoint, strings.NewReader(xml), "application/xml;charset=utf-8", response, query)
}

// PostFiles implements gojenkins.JenkinsRequester; branchml uploads no files.
func (r *Requester) PostFiles(ctx context.Context, endpoint string, payload io.Reader, response any, query map[string]string, files []string) (*http.Response, error) {
	return nil, errors.New("jenkins: file parameters are not supported")
}

func (r *Requester) post(ctx context.Context, endpoint string, payload io.Reader, contentType string, response any, query map[string]string) (*http.Response, error) {
	var body []byte
	if payload != nil {
		b, err := io.ReadAll(payload)
		if err != nil {
			return nil, err
		}
		body = b
	} else {
		body = []byte{}
	}
	resp, data, err := r.do(ctx, http.MethodPost, endpoint, query, body, contentType, true)
	if err != nil {
		return resp, err
	}
	if _, ok := response.(*string); ok {
		return resp, decode(data, response)
	}
	return resp, nil
}

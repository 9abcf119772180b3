package kfp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// gRPC status codes KFP's grpc-gateway puts in google.rpc.Status.code.
const (
	codeNotFound      = 5
	codeAlreadyExists = 6
)

// APIError is a non-2xx answer of the KFP API server.
type APIError struct {
	Method string
	// URL is the request URL without its query.
	URL        string
	StatusCode int
	// Code is the gRPC code of the google.rpc.Status body (0 when the body
	// is not one, e.g. text/plain from a proxy or an older server).
	Code int
	// Message is the status message, or the start of a non-JSON body.
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("KFP %s %s: %d %s: %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode), msg)
}

// HTTPStatus is the response status code (pipelines.StatusError).
func (e *APIError) HTTPStatus() int { return e.StatusCode }

// AlreadyExists reports a duplicate name: 409 or gRPC ALREADY_EXISTS, or,
// as older API servers answer, a 500 whose body says the name already exists.
func (e *APIError) AlreadyExists() bool {
	if e.StatusCode == http.StatusConflict || e.Code == codeAlreadyExists {
		return true
	}
	return e.StatusCode >= 500 && strings.Contains(strings.ToLower(e.Message), "already exist")
}

// NotFound reports a 404 or gRPC NOT_FOUND.
func (e *APIError) NotFound() bool {
	return e.StatusCode == http.StatusNotFound || e.Code == codeNotFound
}

// Temporary reports whether a retry may succeed: 5xx (but not a duplicate
// name), 408 and 429.
func (e *APIError) Temporary() bool {
	if e.AlreadyExists() {
		return false
	}
	return e.StatusCode >= 500 || e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests
}

// Is makes errors.Is(err, pipelines.ErrNotFound) hold for NotFound answers.
func (e *APIError) Is(target error) bool { return target == pipelines.ErrNotFound && e.NotFound() }

// newAPIError reads an error answer (at most 64 KiB of its body).
func newAPIError(req *http.Request, res *http.Response) *APIError {
	u := *req.URL
	u.RawQuery, u.User = "", nil
	e := &APIError{Method: req.Method, URL: u.String(), StatusCode: res.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &st) == nil && (st.Message != "" || st.Code != 0) {
		e.Code, e.Message = st.Code, st.Message
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 512 {
			e.Message = e.Message[:512] + "…"
		}
	}
	return e
}

// statusTransport turns every non-2xx answer into an *APIError, so that
// callers see the status and body whatever the content type (the generated
// client can only read JSON error bodies).
type statusTransport struct{ next http.RoundTripper }

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode/100 == 2 {
		return res, nil
	}
	defer res.Body.Close()
	return nil, newAPIError(req, res)
}

// ResponseError is a 2xx answer the client could not read (malformed JSON).
type ResponseError struct {
	Op  string
	Err error
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("KFP %s: malformed response: %v", e.Op, e.Err)
}

func (e *ResponseError) Unwrap() error { return e.Err }

// temporary reports whether err (from one attempt) is worth retrying:
// an *APIError that says so, a network timeout, a refused or reset
// connection, or the attempt's own deadline (not the caller's).
func temporary(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Temporary()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		var op *net.OpError
		if errors.As(err, &op) {
			return true
		}
		return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
	}
	return false
}

var _ pipelines.StatusError = (*APIError)(nil)

package jenkins

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/branchml/branchml/agents/internal/secrets"
)

// APIError is a Jenkins answer with a non-2xx status.
type APIError struct {
	// Method and URL of the request; URL carries no credentials.
	Method, URL string
	// Status is the HTTP status code.
	Status int
	// Message is Jenkins' X-Error header or the start of the body (at most 200 bytes, secrets masked).
	Message string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Temporary reports whether a retry may succeed: 408, 429 and 5xx.
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Fix says what an operator can do about the error.
func (e *APIError) Fix() string {
	switch {
	case e.Status == http.StatusUnauthorized:
		return "check JENKINS_USER and JENKINS_API_TOKEN (or JENKINS_API_TOKEN_FILE): an API token from the user's Security page"
	case e.Status == http.StatusForbidden:
		return "give the Jenkins user the permission this needs (Job/Create, Job/Configure, Job/Build, Job/Read)"
	case e.Status == http.StatusNotFound:
		return "check the job path (folders separated by /) and the branch name; has the multibranch job indexed the branch?"
	case e.Temporary():
		return "Jenkins is busy or restarting; retry"
	}
	return ""
}

// IsNotFound reports whether err is a Jenkins 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

func newAPIError(method, rawURL string, status int, xerr string, body []byte) *APIError {
	msg := xerr
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if strings.HasPrefix(msg, "<") { // an HTML error page says nothing useful
			msg = ""
		}
	}
	return &APIError{Method: method, URL: rawURL, Status: status, Message: secrets.Redact(msg)}
}

// CancelledError is a queue item that was cancelled before it started a build.
type CancelledError struct {
	// QueueID is the queue item's id.
	QueueID int64
}

func (e *CancelledError) Error() string {
	return fmt.Sprintf("queue item %d was cancelled before it started a build", e.QueueID)
}

// BuildFailedError is a build that ended with a result other than SUCCESS.
type BuildFailedError struct {
	// URL of the build; Result is Jenkins' result (FAILURE, UNSTABLE, ABORTED, NOT_BUILT).
	URL, Result string
}

func (e *BuildFailedError) Error() string { return fmt.Sprintf("build %s ended %s", e.URL, e.Result) }

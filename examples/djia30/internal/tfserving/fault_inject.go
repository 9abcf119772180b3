//go:build faultinject

package tfserving

import "net/http"

// The fault-injecting build (go build -tags faultinject), for tests of a
// canary analysis on real pods only: every predict request that reaches a
// loaded version fails as TF Serving fails an internal error (HTTP 500,
// error code INTERNAL, counted in request_count with that status), while
// status, metadata and metrics answer as usual, so the pods are Ready and
// the failures are seen in the server's own metrics.
func init() {
	injectFault = func() *apiError {
		return &apiError{http.StatusInternalServerError, "INTERNAL", "injected fault: this server was built with -tags faultinject"}
	}
}

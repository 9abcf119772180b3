package kfp

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"time"

	"github.com/branchml/branchml/agents/internal/fake/fakehttp"
)

// Fault wraps the fake's handler to inject an error or a delay; see
// fakehttp.Fault.
type Fault = fakehttp.Fault

// On applies f only to requests whose method is method ("" = any) and whose
// path matches the regular expression path, and only to the first times of
// them (times <= 0: to all). Other requests go straight to the handler.
func On(method, path string, times int, f Fault) Fault { return fakehttp.On(method, path, times, f) }

// Fail answers httpCode with a google.rpc.Status body of gRPC code and message,
// as KFP's grpc-gateway does (e.g. 503 / 14 UNAVAILABLE, 404 / 5 NOT_FOUND).
func Fail(httpCode, code int, message string) Fault {
	return fakehttp.Answer(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, httpCode, code, message)
	})
}

// Unavailable answers 503 with gRPC code 14, as an API server that is
// restarting (or its proxy) does.
func Unavailable() Fault {
	return Fail(http.StatusServiceUnavailable, codeUnavailable, "upstream connect error")
}

// Text answers httpCode with a text/plain body, as proxies and older API
// servers do.
func Text(httpCode int, body string) Fault { return fakehttp.Text(httpCode, body) }

// Delay waits d (or until the client goes away) before handling the request.
func Delay(d time.Duration) Fault { return fakehttp.Delay(d) }

// Malformed answers 200 with a JSON body cut in the middle.
func Malformed() Fault {
	return fakehttp.Malformed("application/json", `{"pipelines": [{"pipeline_id": "x`)
}

// TarGz returns files (name → content) as a gzipped tar archive, the form
// in which the API server's ReadArtifact returns an artifact.
func TarGz(files map[string][]byte) []byte {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		tw.Write(files[n])
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}

var createdAt = regexp.MustCompile(`"created_at":"[^"]*"`)

// BadTimestamps lets the handler do its work (the object is created) and
// then answers its 2xx body with every created_at as a protobuf Timestamp
// object instead of an RFC 3339 string, which the generated client cannot
// decode: the malformed replies of kubeflow/pipelines #2764 and #3686.
func BadTimestamps() Fault {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			body := rec.Body.Bytes()
			if rec.Code/100 == 2 {
				body = createdAt.ReplaceAll(body, []byte(`"created_at":{"seconds":1575597003,"nanos":0}`))
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

// When applies f only to the requests match accepts, and only to the
// first times of them (times <= 0: to all); see fakehttp.When.
func When(match func(*http.Request) bool, times int, f Fault) Fault {
	return fakehttp.When(match, times, f)
}

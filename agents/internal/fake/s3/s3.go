package s3

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is the object store. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	// AccessKeyID is the only access key ID whose requests are answered;
	// others get 403 InvalidAccessKeyId. SecretAccessKey goes with it
	// (signatures are not checked).
	AccessKeyID, SecretAccessKey string

	backend *s3mem.Backend
	mu      sync.Mutex
	reqs    []string
	clock   time.Time
}

// New starts an object store on 127.0.0.1 with the given buckets; close it
// with Close.
func New(accessKeyID, secretAccessKey string, buckets ...string) *Server {
	s := &Server{AccessKeyID: accessKeyID, SecretAccessKey: secretAccessKey, backend: s3mem.New(), clock: time.Now().Truncate(time.Second)}
	for _, b := range buckets {
		s.backend.CreateBucket(b)
	}
	h := gofakes3.New(s.backend, gofakes3.WithoutVersioning()).Server()
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+query(r))
		s.mu.Unlock()
		if !strings.Contains(r.Header.Get("Authorization"), "Credential="+s.AccessKeyID+"/") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>`))
			return
		}
		h.ServeHTTP(w, r)
	}))
	return s
}

func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.Query().Encode()
}

// Put stores data as object key of bucket.
func (s *Server) Put(bucket, key string, data []byte) error {
	s.mu.Lock()
	s.clock = s.clock.Add(time.Second) // distinct, increasing Last-Modified times
	at := s.clock
	s.mu.Unlock()
	meta := map[string]string{"Content-Type": "application/octet-stream", "Last-Modified": at.UTC().Format(http.TimeFormat)}
	_, err := s.backend.PutObject(bucket, key, meta, bytes.NewReader(data), int64(len(data)), nil)
	return err
}

// Requests returns "METHOD /bucket/key?query" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

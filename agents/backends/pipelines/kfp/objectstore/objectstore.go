package objectstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// MaxObjectBytes bounds what Read returns (metrics files are small).
const MaxObjectBytes = 64 << 20

// DefaultPipelineRoot is KFP's default pipeline root (the
// kfp-launcher ConfigMap's defaultPipelineRoot when none is set).
const DefaultPipelineRoot = "minio://mlpipeline/v2/artifacts"

// Config says how to reach the object store.
type Config struct {
	// Endpoint is the store's URL, e.g. "http://minio-service.kubeflow:9000"
	// or "https://s3.eu-west-1.amazonaws.com"; the scheme chooses TLS.
	Endpoint string
	// Region is the bucket's region (default "us-east-1").
	Region string
	// Bucket, when set, is the only bucket read: an artifact URI naming
	// another bucket is an error naming both.
	Bucket string
	// AccessKeyID, SecretAccessKey and SessionToken are the credentials
	// (read them with agents/internal/secrets; never from flags or files
	// of the repository). Empty: anonymous requests.
	AccessKeyID, SecretAccessKey, SessionToken string
	// CAFile is a PEM bundle to trust ("" = system roots); InsecureSkipVerify
	// skips certificate verification.
	CAFile             string
	InsecureSkipVerify bool
	// Timeout bounds each request (default 60s).
	Timeout time.Duration
}

// Store reads one object store.
type Store struct {
	cfg    Config
	client *minio.Client
}

// New returns a store client; it fails on a bad endpoint or CA file.
// Nothing is contacted yet.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("object store endpoint %q: want http(s)://host[:port], e.g. http://minio-service.kubeflow:9000", cfg.Endpoint)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" || cfg.InsecureSkipVerify {
		tc := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // explicit opt-in from config
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("object store CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("object store CA file %s: no PEM certificates in it", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	var creds *credentials.Credentials
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: cfg.Region, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.Endpoint, err)
	}
	return &Store{cfg: cfg, client: c}, nil
}

// Endpoint is the store's URL as configured.
func (s *Store) Endpoint() string { return s.cfg.Endpoint }

// ParseURI splits a KFP artifact URI ("minio://bucket/key",
// "s3://bucket/key") into bucket and key. Other schemes (gs://, oci://)
// are errors naming the scheme: they are not S3-compatible stores.
func ParseURI(uri string) (bucket, key string, err error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "", "", fmt.Errorf("artifact URI %q has no scheme (want minio:// or s3://)", uri)
	}
	if scheme != "minio" && scheme != "s3" {
		return "", "", fmt.Errorf("artifact URI %q: scheme %s:// is not an S3-compatible store (branchml reads minio:// and s3:// pipeline roots)", uri, scheme)
	}
	rest, _, _ = strings.Cut(rest, "?") // query strings carry session info, not keys
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("artifact URI %q names no bucket", uri)
	}
	return bucket, strings.Trim(key, "/"), nil
}

func (s *Store) bucketOf(uri string) (string, string, error) {
	bucket, key, err := ParseURI(uri)
	if err != nil {
		return "", "", err
	}
	if s.cfg.Bucket != "" && bucket != s.cfg.Bucket {
		return "", "", fmt.Errorf("artifact URI %q is in bucket %s, but backends.pipelines.objectStore.bucket is %s", uri, bucket, s.cfg.Bucket)
	}
	return bucket, key, nil
}

func (s *Store) where(bucket, key string) string {
	return fmt.Sprintf("s3://%s/%s at %s", bucket, key, s.cfg.Endpoint)
}

// Read returns the artifact at uri: the object itself when the artifact is
// a file; for a directory artifact (objects below "<key>/"), the object
// named file inside it, or the only one when file is "". Errors name the
// object and the store; a missing one matches pipelines.ErrNotFound.
func (s *Store) Read(ctx context.Context, uri, file string) ([]byte, error) {
	bucket, key, err := s.bucketOf(uri)
	if err != nil {
		return nil, err
	}
	data, err := s.get(ctx, bucket, key)
	if !errors.Is(err, pipelines.ErrNotFound) {
		return data, err
	}
	objs, lerr := s.list(ctx, bucket, key+"/")
	if lerr != nil {
		return nil, lerr
	}
	switch {
	case len(objs) == 0:
		return nil, err
	case file != "":
		for _, o := range objs {
			if o.Key == key+"/"+file || strings.HasSuffix(o.Key, "/"+file) {
				return s.get(ctx, bucket, o.Key)
			}
		}
		return nil, fmt.Errorf("%s is a directory without %s (it holds %s): %w", s.where(bucket, key), file, names(objs, key+"/"), pipelines.ErrNotFound)
	case len(objs) == 1:
		return s.get(ctx, bucket, objs[0].Key)
	}
	return nil, fmt.Errorf("%s is a directory of %d files (%s): name the file", s.where(bucket, key), len(objs), names(objs, key+"/"))
}

// Find looks for output name of task of run runID without ML Metadata: it
// lists "<root key>/<pipeline>/<runID>/<task>/" and takes the newest
// object named name (the layout "<task>/<salt>/<name>" of KFP 2.x, or
// "<task>/<name>" of early 2.0) or, for a directory artifact, named file
// inside one named name. It returns the content and the URI it read.
func (s *Store) Find(ctx context.Context, root, pipeline, runID, task, name, file string) ([]byte, string, error) {
	bucket, rootKey, err := s.bucketOf(root)
	if err != nil {
		return nil, "", err
	}
	prefix := strings.TrimPrefix(strings.Join([]string{rootKey, pipeline, runID, task}, "/")+"/", "/")
	objs, err := s.list(ctx, bucket, prefix)
	if err != nil {
		return nil, "", err
	}
	var match []minio.ObjectInfo
	for _, o := range objs {
		parts := strings.Split(strings.TrimPrefix(o.Key, prefix), "/")
		n := len(parts)
		switch {
		case parts[n-1] == name && n <= 2:
			match = append(match, o)
		case n >= 2 && n <= 3 && parts[n-2] == name && (file == "" || parts[n-1] == file):
			match = append(match, o)
		}
	}
	if len(match) == 0 {
		what := name
		if file != "" {
			what += " (or " + name + "/" + file + ")"
		}
		return nil, "", fmt.Errorf("no object %s below %s: %w", what, s.where(bucket, prefix), pipelines.ErrNotFound)
	}
	sort.SliceStable(match, func(i, j int) bool { return match[i].LastModified.After(match[j].LastModified) })
	data, err := s.get(ctx, bucket, match[0].Key)
	return data, "s3://" + bucket + "/" + match[0].Key, err
}

func (s *Store) get(ctx context.Context, bucket, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	obj, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.errorOf(bucket, key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, MaxObjectBytes+1))
	if err != nil {
		return nil, s.errorOf(bucket, key, err)
	}
	if len(data) > MaxObjectBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", s.where(bucket, key), MaxObjectBytes)
	}
	return data, nil
}

func (s *Store) list(ctx context.Context, bucket, prefix string) ([]minio.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var out []minio.ObjectInfo
	for o := range s.client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, s.errorOf(bucket, prefix, o.Err)
		}
		out = append(out, o)
		if len(out) > 10000 {
			return nil, fmt.Errorf("%s holds more than 10000 objects", s.where(bucket, prefix))
		}
	}
	return out, nil
}

// errorOf names the object and the store, and maps S3's NoSuchKey and
// NoSuchBucket to pipelines.ErrNotFound.
func (s *Store) errorOf(bucket, key string, err error) error {
	er := minio.ToErrorResponse(err)
	switch er.Code {
	case minio.NoSuchKey, minio.NoSuchBucket:
		return fmt.Errorf("%s: %s: %w", s.where(bucket, key), er.Code, pipelines.ErrNotFound)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("%s: %s (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): %w", s.where(bucket, key), er.Code, err)
	}
	return fmt.Errorf("%s: %w", s.where(bucket, key), err)
}

func names(objs []minio.ObjectInfo, prefix string) string {
	var n []string
	for _, o := range objs {
		n = append(n, strings.TrimPrefix(o.Key, prefix))
	}
	if len(n) > 10 {
		n = append(n[:10], "…")
	}
	return strings.Join(n, ", ")
}

// Bucket is the configured bucket ("" when any bucket may be read).
func (s *Store) Bucket() string { return s.cfg.Bucket }

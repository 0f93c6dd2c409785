package backup

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Store keeps each object under prefix/ in an S3 bucket. A Put streams
// through a multipart upload of S3PartSize parts (one part buffered at a
// time) that S3 completes atomically: until the upload completes nothing
// lists under the name, and a failed upload is aborted.
type s3Store struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	dest     string
	partSize uint64
}

const (
	defaultPartSize = 16 << 20
	minPartSize     = 5 << 20 // S3's smallest part but the last
	awsEndpoint     = "s3.amazonaws.com"
)

func openS3(ctx context.Context, d destination, opts StoreOptions) (*s3Store, error) {
	s := &s3Store{bucket: d.bucket, dest: "s3://" + d.bucket, partSize: defaultPartSize}
	if d.prefix != "" {
		s.prefix = d.prefix + "/"
		s.dest += "/" + d.prefix
	}
	switch {
	case opts.S3PartSize == 0:
	case opts.S3PartSize < minPartSize:
		return nil, fmt.Errorf("S3 part size %d is below S3's minimum of 5 MiB", opts.S3PartSize)
	default:
		s.partSize = uint64(opts.S3PartSize)
	}

	endpoint := opts.S3Endpoint
	for _, env := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if endpoint == "" {
			endpoint = os.Getenv(env)
		}
	}
	host, secure := awsEndpoint, true
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if !strings.Contains(endpoint, "://") {
			u, err = url.Parse("https://" + endpoint)
		}
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("S3 endpoint %q: want http(s)://host[:port]", endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" && host != awsEndpoint {
		// Other services rarely care; asking them for the bucket's
		// location costs a request and some do not answer it.
		region = "us-east-1"
	}
	client, err := minio.New(host, &minio.Options{
		Creds:  credentials.NewEnvAWS(),
		Secure: secure,
		Region: region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", host, err)
	}
	s.client = client
	ok, err := client.BucketExists(ctx, s.bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s at %s: %w", s.bucket, host, s3Error(err))
	}
	if !ok {
		return nil, fmt.Errorf("bucket %s does not exist at %s", s.bucket, host)
	}
	return s, nil
}

func (s *s3Store) String() string { return s.dest }

func (s *s3Store) put(ctx context.Context, name string, r io.Reader) error {
	// Size -1: a multipart upload until r ends, one part in memory at a
	// time. A short object goes up in one PUT; an empty one with its size
	// said, as some services insist on it.
	br := bufio.NewReaderSize(ctxReader{ctx, r}, 16)
	size := int64(-1)
	if _, err := br.Peek(1); err == io.EOF {
		size = 0
	} else if err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+name, br, size, minio.PutObjectOptions{
		PartSize:    s.partSize,
		ContentType: "application/octet-stream",
		// An unsigned payload rather than aws-chunked signing: not every
		// S3-compatible store decodes the chunked form (some keep its
		// framing as the object's bytes), and each backup file carries its
		// own SHA-256 in the manifest, checked when read back.
		DisableContentSha256: true,
	})
	return s3Error(err)
}

func (s *s3Store) open(ctx context.Context, name string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Error(err)
	}
	// GetObject is lazy: Stat sends the request, so a missing object is
	// reported here rather than at the first Read.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s3Error(err)
	}
	return obj, nil
}

func (s *s3Store) list(ctx context.Context, prefix string) ([]Object, error) {
	ctx, cancel := context.WithCancel(ctx) // stops the lister if we return early
	defer cancel()
	var objs []Object
	for info := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if info.Err != nil {
			return nil, s3Error(info.Err)
		}
		objs = append(objs, Object{Name: strings.TrimPrefix(info.Key, s.prefix), Size: info.Size, ModTime: info.LastModified})
	}
	// S3 lists in key order, which is name order.
	return objs, ctx.Err()
}

func (s *s3Store) delete(ctx context.Context, name string) error {
	return s3Error(s.client.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{}))
}

// s3Error converts the client's errors once: a missing key becomes
// ErrNotFound, a service error reads "<Code>: <message>".
func s3Error(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "":
		return err
	case "NoSuchKey":
		return ErrNotFound
	case err.Error():
		return err
	default:
		return fmt.Errorf("%s: %w", resp.Code, err)
	}
}

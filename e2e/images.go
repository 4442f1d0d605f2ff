//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// etcdVersion is the etcd server release the e2e images run. Keep it equal to
// the version pinned in e2e/etcd/go.mod.
const etcdVersion = "v3.7.3"

// jaegerVersion is the Jaeger release (module github.com/jaegertracing/jaeger,
// the v2 binary cmd/jaeger) run as each zone's real collector. Keep it equal
// to the version pinned in e2e/jaeger/go.mod.
const jaegerVersion = "v1.76.0"

// image names one binary packaged alone in a FROM scratch image.
type image struct {
	// Name is the binary's file name inside the image (/Name).
	Name string
	// Tag is the local image reference, e.g. meshtrace-e2e/cp:dev.
	Tag string
	// build writes the static binary to dst.
	build func(ctx context.Context, dst string) error
	// timeout bounds building the image; 0 means 10 minutes.
	timeout time.Duration

	once sync.Once
	err  error
}

// built lists the images this run tagged, so it removes them at the end.
var built struct {
	mu     sync.Mutex
	images []*image
}

var (
	imageCP = &image{Name: "meshtrace-cp", Tag: "meshtrace-e2e/cp:dev",
		build: goBuild("./cmd/meshtrace-cp")}
	imageCollector = &image{Name: "collector", Tag: "meshtrace-e2e/collector:dev",
		build: goBuild("./e2e/cmd/collector")}
	imageADSClient = &image{Name: "adsclient", Tag: "meshtrace-e2e/adsclient:dev",
		build: goBuild("./e2e/cmd/adsclient")}
	imageEtcd = &image{Name: "etcd", Tag: "meshtrace-e2e/etcd:" + etcdVersion,
		build: buildEtcd}
	imageJaeger = &image{Name: "jaeger", Tag: "meshtrace-e2e/jaeger:" + jaegerVersion,
		build: buildJaeger, timeout: 25 * time.Minute}
	imageFlood = &image{Name: "flood", Tag: "meshtrace-e2e/flood:dev",
		build: goBuild("./e2e/cmd/flood")}
)

// Ref builds the image on first use in this test binary and returns its tag.
// A failed build fails every test that needs the image, without retrying.
func (im *image) Ref(t testing.TB) string {
	t.Helper()
	if err := im.ensure(); err != nil {
		t.Fatalf("image %s: %v", im.Tag, err)
	}
	return im.Tag
}

// ensure builds the image once; safe to call from any goroutine.
func (im *image) ensure() error {
	im.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(im.timeout, 10*time.Minute))
		defer cancel()
		start := time.Now()
		im.err = im.make(ctx)
		if im.err == nil {
			built.mu.Lock()
			built.images = append(built.images, im)
			built.mu.Unlock()
			logf("image %s built in %s", im.Tag, time.Since(start).Round(100*time.Millisecond))
		}
	})
	return im.err
}

const dockerfile = `FROM scratch
COPY %[1]s /%[1]s
ENTRYPOINT ["/%[1]s"]
`

func (im *image) make(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "meshtrace-e2e-"+im.Name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := im.build(ctx, filepath.Join(dir, im.Name)); err != nil {
		return fmt.Errorf("build binary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), fmt.Appendf(nil, dockerfile, im.Name), 0o644); err != nil {
		return err
	}
	repo, tag, _ := strings.Cut(im.Tag, ":")
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("docker provider: %w", err)
	}
	defer provider.Close()
	old := imageID(ctx, im.Tag)
	var buildLog strings.Builder
	req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context:        dir,
		Dockerfile:     "Dockerfile",
		Repo:           repo,
		Tag:            tag,
		KeepImage:      true,
		BuildLogWriter: &buildLog,
	}}
	if _, err := provider.BuildImage(ctx, req); err != nil {
		return fmt.Errorf("docker build: %w\n%s", err, buildLog.String())
	}
	// A rebuilt binary leaves the previous image untagged: remove it, so
	// runs do not pile up images. Failing (e.g. still in use) is harmless.
	if old != "" && old != imageID(ctx, im.Tag) {
		if cli, err := testcontainers.NewDockerClientWithOpts(ctx); err == nil {
			_, _ = cli.ImageRemove(ctx, old, client.ImageRemoveOptions{PruneChildren: true})
			cli.Close()
		}
	}
	return nil
}

// KeepImagesEnv, set to 1, keeps the images the run built (faster reruns).
const KeepImagesEnv = "MESHTRACE_E2E_KEEP_IMAGES"

// removeImages removes the images this run built, once its containers are
// gone, so a run leaves no image behind. It returns what it could not remove.
func removeImages() []string {
	if os.Getenv(KeepImagesEnv) == "1" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	defer cli.Close()
	built.mu.Lock()
	images := built.images
	built.images = nil
	built.mu.Unlock()
	var failed []string
	for _, im := range images {
		if _, err := cli.ImageRemove(ctx, im.Tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", im.Tag, err))
			continue
		}
		if id := imageID(ctx, im.Tag); id != "" {
			failed = append(failed, fmt.Sprintf("%s: still there as %s", im.Tag, id))
			continue
		}
		logf("removed image %s", im.Tag)
	}
	return failed
}

// imageID is the id of a local image, "" when there is none.
func imageID(ctx context.Context, ref string) string {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return ""
	}
	defer cli.Close()
	img, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		return ""
	}
	return img.ID
}

// repoRoot is the main module's root, the parent of this package's directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// goBuild returns a builder of a static binary of a main-module package.
func goBuild(pkg string) func(ctx context.Context, dst string) error {
	return func(ctx context.Context, dst string) error {
		return run(ctx, repoRoot(), []string{"CGO_ENABLED=0"},
			"go", "build", "-trimpath", "-ldflags=-s -w", "-o", dst, pkg)
	}
}

// buildEtcd builds the etcd server from the module pinned in e2e/etcd, once
// per machine: the binary is cached under the user cache dir by version.
func buildEtcd(ctx context.Context, dst string) error {
	return buildPinned(ctx, dst, "etcd", etcdVersion, "go.etcd.io/etcd/server/v3")
}

// buildJaeger builds Jaeger (all-in-one when run without a config: OTLP,
// Zipkin and Jaeger receivers, memory storage, query API on 16686) from the
// module pinned in e2e/jaeger, cached like etcd. A cold build compiles a
// large dependency tree (see e2e/README.md for how long it takes).
func buildJaeger(ctx context.Context, dst string) error {
	return buildPinned(ctx, dst, "jaeger", jaegerVersion, "github.com/jaegertracing/jaeger/cmd/jaeger")
}

// buildPinned builds pkg from the tool module e2e/<name> into the user
// cache dir (once per machine and version) and copies it to dst.
func buildPinned(ctx context.Context, dst, name, version, pkg string) error {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cached := filepath.Join(cache, "meshtrace-e2e", name+"-"+version, name)
	if _, err := os.Stat(cached); err != nil {
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
			return err
		}
		tmp := cached + fmt.Sprintf(".tmp%d", os.Getpid())
		defer os.Remove(tmp)
		logf("building %s %s (cached afterwards in %s)", name, version, cached)
		start := time.Now()
		if err := run(ctx, filepath.Join(repoRoot(), "e2e", name),
			[]string{"CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod"},
			"go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, pkg); err != nil {
			return err
		}
		logf("built %s %s in %s", name, version, time.Since(start).Round(time.Second))
		if err := os.Rename(tmp, cached); err != nil {
			return err
		}
	}
	return copyFile(cached, dst)
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return errors.Join(out.Close())
}

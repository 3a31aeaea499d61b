// Command containerlint checks a Containerfile with BuildKit's own lint (the checks of
// `docker build --check`), without a container engine or a registry: it parses the file
// and converts every stage the way a build would, with an empty config for each base image. It prints each warning as
// "file:line: rule: message" and exits 1 if there is any, 2 if the file does not parse.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	digest "github.com/opencontainers/go-digest"
)

// offline answers every base image with an empty Linux image config, so the lint never
// contacts a registry (this machine reaches none).
type offline struct{}

func (offline) ResolveImageConfig(
	_ context.Context, ref string, _ sourceresolver.Opt,
) (string, digest.Digest, []byte, error) {
	config := []byte(`{"architecture":"amd64","os":"linux","config":{}}`)
	return ref, digest.FromBytes(config), config, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: containerlint CONTAINERFILE")
		os.Exit(2)
	}
	path := os.Args[1]
	text, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	source := llb.NewSourceMap(nil, path, "Dockerfile", text)
	source.Definition = &llb.Definition{} // the lint reads it; nothing is built
	results, err := dockerfile2llb.DockerfileLint(context.Background(), text, dockerfile2llb.ConvertOpt{
		SourceMap:    source,
		MetaResolver: offline{},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if results.Error != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", path, results.Error.Message)
		os.Exit(2)
	}
	for _, warning := range results.Warnings {
		line := int32(0)
		if warning.Location != nil && len(warning.Location.Ranges) > 0 {
			line = warning.Location.Ranges[0].Start.Line
		}
		fmt.Printf("%s:%d: %s: %s\n", path, line, warning.RuleName, warning.Detail)
	}
	fmt.Fprintf(os.Stderr, "%d warning(s)\n", len(results.Warnings))
	if len(results.Warnings) > 0 {
		os.Exit(1)
	}
}

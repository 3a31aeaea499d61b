// tessera-bench appends the entries of one file to a fresh Tessera POSIX log and times
// them until a signed checkpoint covers the last one (benchmarks/peers.py runs it).
//
// The entries file is a sequence of records, each a big-endian uint32 length and that
// many bytes. The result is one JSON line on stdout.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
)

type result struct {
	Entries            int     `json:"entries"`
	Bytes              int     `json:"bytes"`
	Seconds            float64 `json:"seconds"`
	CheckpointSize     uint64  `json:"checkpoint_size"`
	BatchSize          uint    `json:"batch_size"`
	BatchAge           string  `json:"batch_age"`
	CheckpointInterval string  `json:"checkpoint_interval"`
}

func readEntries(path string) ([][]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var entries [][]byte
	total := 0
	var head [4]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return entries, total, nil
			}
			return nil, 0, fmt.Errorf("entry %d: %w", len(entries), err)
		}
		b := make([]byte, binary.BigEndian.Uint32(head[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, 0, fmt.Errorf("entry %d: %w", len(entries), err)
		}
		entries = append(entries, b)
		total += len(b)
	}
}

func run(storageDir, entriesFile string, batchSize uint, batchAge, interval time.Duration) (*result, error) {
	entries, total, err := readEntries(entriesFile)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("no entries")
	}
	skey, _, err := note.GenerateKey(rand.Reader, "bench.invalid/tessera-posix")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	driver, err := posix.New(ctx, posix.Config{Path: storageDir})
	if err != nil {
		return nil, fmt.Errorf("posix storage: %w", err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(batchSize, batchAge).
		WithCheckpointInterval(interval)
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		return nil, fmt.Errorf("appender: %w", err)
	}
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond)

	start := time.Now()
	futures := make([]tessera.IndexFuture, len(entries))
	for i, e := range entries {
		futures[i] = appender.Add(ctx, tessera.NewEntry(e))
	}
	last, _, err := awaiter.Await(ctx, futures[len(futures)-1])
	if err != nil {
		return nil, fmt.Errorf("awaiting the last entry: %w", err)
	}
	seconds := time.Since(start).Seconds()
	for i, f := range futures {
		if _, err := f(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	size, err := checkpointSize(ctx, reader)
	if err != nil {
		return nil, err
	}
	if size <= last.Index {
		return nil, fmt.Errorf("checkpoint size %d does not cover entry %d", size, last.Index)
	}
	if err := shutdown(ctx); err != nil {
		return nil, fmt.Errorf("shutdown: %w", err)
	}
	return &result{
		Entries: len(entries), Bytes: total, Seconds: seconds, CheckpointSize: size,
		BatchSize: batchSize, BatchAge: batchAge.String(), CheckpointInterval: interval.String(),
	}, nil
}

// checkpointSize is the tree size the published checkpoint's note commits to.
func checkpointSize(ctx context.Context, reader tessera.LogReader) (uint64, error) {
	raw, err := reader.ReadCheckpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the checkpoint: %w", err)
	}
	var origin string
	var size uint64
	if _, err := fmt.Sscanf(string(raw), "%s\n%d\n", &origin, &size); err != nil {
		return 0, fmt.Errorf("parsing the checkpoint: %w", err)
	}
	return size, nil
}

func main() {
	storageDir := flag.String("storage_dir", "", "directory of the new log (must be empty or absent)")
	entriesFile := flag.String("entries", "", "file of length-prefixed entries")
	batchSize := flag.Uint("batch_size", tessera.DefaultBatchMaxSize, "entries per batch")
	batchAge := flag.Duration("batch_age", tessera.DefaultBatchMaxAge, "longest a batch waits")
	interval := flag.Duration("checkpoint_interval", 100*time.Millisecond, "checkpoint cadence")
	flag.Parse()
	if *storageDir == "" || *entriesFile == "" {
		fmt.Fprintln(os.Stderr, "usage: tessera-bench -storage_dir DIR -entries FILE")
		os.Exit(2)
	}
	res, err := run(*storageDir, *entriesFile, *batchSize, *batchAge, *interval)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tessera-bench:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
}

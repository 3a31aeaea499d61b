// immudb-bench writes the entries of one file to a running immudb server with SetAll,
// a fixed number of entries per transaction, in one session, and times it
// (benchmarks/peers.py starts the server and runs this).
//
// The entries file is a sequence of records, each a big-endian uint32 length and that
// many bytes. Entry i is stored under the 8-byte big-endian key i. Each SetAll returns
// once its transaction is committed (fsynced with the server's default --synced) and
// indexed (NoWait false). The result is one JSON line on stdout.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/codenotary/immudb/pkg/api/schema"
	immudb "github.com/codenotary/immudb/pkg/client"
)

type result struct {
	Entries      int     `json:"entries"`
	Bytes        int     `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	Transactions int     `json:"transactions"`
	LastTx       uint64  `json:"last_tx"`
	PerTx        int     `json:"per_tx"`
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

func run(address string, port int, entriesFile, stateDir string, perTx int) (*result, error) {
	entries, total, err := readEntries(entriesFile)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 || perTx < 1 {
		return nil, errors.New("no entries, or fewer than one entry per transaction")
	}
	requests := make([]*schema.SetRequest, 0, (len(entries)+perTx-1)/perTx)
	for start := 0; start < len(entries); start += perTx {
		end := min(start+perTx, len(entries))
		kvs := make([]*schema.KeyValue, 0, end-start)
		for i := start; i < end; i++ {
			key := make([]byte, 8)
			binary.BigEndian.PutUint64(key, uint64(i))
			kvs = append(kvs, &schema.KeyValue{Key: key, Value: entries[i]})
		}
		requests = append(requests, &schema.SetRequest{KVs: kvs})
	}
	ctx := context.Background()
	client := immudb.NewClient().WithOptions(
		immudb.DefaultOptions().WithAddress(address).WithPort(port).WithDir(stateDir),
	)
	if err := client.OpenSession(ctx, []byte("immudb"), []byte("immudb"), "defaultdb"); err != nil {
		return nil, fmt.Errorf("opening a session: %w", err)
	}
	defer client.CloseSession(ctx)

	start := time.Now()
	var last *schema.TxHeader
	for i, req := range requests {
		last, err = client.SetAll(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("transaction %d: %w", i, err)
		}
	}
	seconds := time.Since(start).Seconds()
	return &result{
		Entries: len(entries), Bytes: total, Seconds: seconds,
		Transactions: len(requests), LastTx: last.Id, PerTx: perTx,
	}, nil
}

func main() {
	address := flag.String("address", "127.0.0.1", "server address")
	port := flag.Int("port", 3322, "server port")
	entriesFile := flag.String("entries", "", "file of length-prefixed entries")
	perTx := flag.Int("per_tx", 1000, "entries per SetAll transaction")
	stateDir := flag.String("state_dir", os.TempDir(), "where the client keeps its state files")
	flag.Parse()
	if *entriesFile == "" {
		fmt.Fprintln(os.Stderr, "usage: immudb-bench -port PORT -entries FILE")
		os.Exit(2)
	}
	res, err := run(*address, *port, *entriesFile, *stateDir, *perTx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "immudb-bench:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
}

// Command ledger-interop-verify is an independent verifier for the ledger's
// checkpoints and proofs, built only on golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog (the reference implementations of C2SP signed
// notes and RFC 6962 proofs).  It exists so that the Python tests can show
// that what the Python ledger produces is accepted by Go, and that tampered
// data is rejected by Go too.
//
// Input (one JSON document on stdin):
//
//	{"verifier_keys": ["name+hex+base64", ...],
//	 "checkpoints": [{"note": "<signed note>"}],
//	 "inclusion":   [{"note_index": i, "leaf_b64": "...", "index": n, "proof": ["b64", ...]}],
//	 "consistency": [{"old": i, "new": j, "proof": ["b64", ...]}],
//	 "tlog_proofs": [{"text": "<c2sp.org/tlog-proof@v1 file>", "leaf_b64": "..."}]}
//
// Output (one JSON document on stdout): one result per input item, each with
// "ok" and, when ok is false, "error".  The exit status is 0 whenever the input
// was usable (verification failures are results, not errors) and 2 when it was
// not (bad JSON, bad verifier key, a checkpoint reference out of range).
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type checkpointIn struct {
	Note string `json:"note"`
}

type inclusionIn struct {
	NoteIndex int      `json:"note_index"`
	LeafB64   string   `json:"leaf_b64"`
	Index     int64    `json:"index"`
	Proof     []string `json:"proof"`
}

type consistencyIn struct {
	Old   int      `json:"old"`
	New   int      `json:"new"`
	Proof []string `json:"proof"`
}

type tlogProofIn struct {
	Text    string `json:"text"`
	LeafB64 string `json:"leaf_b64"`
}

type input struct {
	VerifierKeys []string        `json:"verifier_keys"`
	Checkpoints  []checkpointIn  `json:"checkpoints"`
	Inclusion    []inclusionIn   `json:"inclusion"`
	Consistency  []consistencyIn `json:"consistency"`
	TlogProofs   []tlogProofIn   `json:"tlog_proofs"`
}

type checkpointOut struct {
	OK     bool   `json:"ok"`
	Origin string `json:"origin,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	Root   string `json:"root,omitempty"`
	Error  string `json:"error,omitempty"`
}

type proofOut struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type tlogProofOut struct {
	OK     bool   `json:"ok"`
	Origin string `json:"origin,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	Index  *int64 `json:"index,omitempty"`
	Error  string `json:"error,omitempty"`
}

type output struct {
	Checkpoints []checkpointOut `json:"checkpoints"`
	Inclusion   []proofOut      `json:"inclusion"`
	Consistency []proofOut      `json:"consistency"`
	TlogProofs  []tlogProofOut  `json:"tlog_proofs"`
}

// checkpoint is a parsed C2SP tlog-checkpoint body.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

const tlogProofHeader = "c2sp.org/tlog-proof@v1"

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var in input
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fail("decoding input JSON: %v", err)
	}
	if dec.More() {
		fail("trailing data after the input JSON document")
	}
	if len(in.VerifierKeys) == 0 {
		fail("no verifier_keys given")
	}
	var verifiers []note.Verifier
	for _, vkey := range in.VerifierKeys {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			fail("verifier key %q: %v", vkey, err)
		}
		verifiers = append(verifiers, v)
	}
	known := note.VerifierList(verifiers...)

	out := output{
		Checkpoints: []checkpointOut{},
		Inclusion:   []proofOut{},
		Consistency: []proofOut{},
		TlogProofs:  []tlogProofOut{},
	}

	opened := make([]*checkpoint, len(in.Checkpoints))
	for i, c := range in.Checkpoints {
		cp, err := openCheckpoint([]byte(c.Note), known)
		if err != nil {
			out.Checkpoints = append(out.Checkpoints, checkpointOut{Error: err.Error()})
			continue
		}
		opened[i] = cp
		out.Checkpoints = append(out.Checkpoints, checkpointOut{
			OK: true, Origin: cp.origin, Size: &cp.size, Root: cp.root.String(),
		})
	}

	lookup := func(i int, what string) *checkpoint {
		if i < 0 || i >= len(opened) {
			fail("%s refers to checkpoint %d, but there are %d", what, i, len(opened))
		}
		return opened[i]
	}

	for k, inc := range in.Inclusion {
		cp := lookup(inc.NoteIndex, fmt.Sprintf("inclusion[%d]", k))
		out.Inclusion = append(out.Inclusion, result(checkInclusion(cp, inc)))
	}

	for k, c := range in.Consistency {
		oldCP := lookup(c.Old, fmt.Sprintf("consistency[%d].old", k))
		newCP := lookup(c.New, fmt.Sprintf("consistency[%d].new", k))
		out.Consistency = append(out.Consistency, result(checkConsistency(oldCP, newCP, c.Proof)))
	}

	for _, p := range in.TlogProofs {
		out.TlogProofs = append(out.TlogProofs, checkTlogProof(p, known))
	}

	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fail("writing output: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ledger-interop-verify: "+format+"\n", args...)
	os.Exit(2)
}

func result(err error) proofOut {
	if err != nil {
		return proofOut{Error: err.Error()}
	}
	return proofOut{OK: true}
}

// openCheckpoint verifies a signed note with note.Open and parses its text as
// a C2SP tlog-checkpoint body.
func openCheckpoint(msg []byte, known note.Verifiers) (*checkpoint, error) {
	n, err := note.Open(msg, known)
	if err != nil {
		return nil, fmt.Errorf("note.Open: %w", err)
	}
	return parseCheckpoint(n.Text)
}

// parseCheckpoint strictly parses "<origin>\n<size>\n<base64 root>\n[extensions\n...]".
func parseCheckpoint(text string) (*checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint: text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, errors.New("checkpoint: fewer than three lines")
	}
	for i, line := range lines {
		if line == "" {
			return nil, fmt.Errorf("checkpoint: line %d is empty", i+1)
		}
	}
	origin := lines[0]
	if strings.ContainsAny(origin, " +") {
		return nil, fmt.Errorf("checkpoint: invalid origin %q", origin)
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return nil, fmt.Errorf("checkpoint: size: %w", err)
	}
	root, err := parseHash(lines[2])
	if err != nil {
		return nil, fmt.Errorf("checkpoint: root hash: %w", err)
	}
	return &checkpoint{origin: origin, size: size, root: root}, nil
}

// parseDecimal parses a non-negative ASCII decimal int64 without leading zeros.
func parseDecimal(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not canonical decimal", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not canonical decimal", s)
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return v, nil
}

// parseHash decodes a strict, canonical standard-base64 32-byte hash.
func parseHash(s string) (tlog.Hash, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != tlog.HashSize || base64.StdEncoding.EncodeToString(raw) != s {
		return tlog.Hash{}, fmt.Errorf("malformed hash %q", s)
	}
	var h tlog.Hash
	copy(h[:], raw)
	return h, nil
}

func parseHashes(list []string) ([]tlog.Hash, error) {
	hashes := make([]tlog.Hash, 0, len(list))
	for i, s := range list {
		h, err := parseHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof hash %d: %w", i, err)
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

func decodeLeaf(s string) ([]byte, error) {
	leaf, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("leaf_b64: %w", err)
	}
	return leaf, nil
}

func checkInclusion(cp *checkpoint, inc inclusionIn) error {
	if cp == nil {
		return fmt.Errorf("checkpoint %d did not verify", inc.NoteIndex)
	}
	leaf, err := decodeLeaf(inc.LeafB64)
	if err != nil {
		return err
	}
	proof, err := parseHashes(inc.Proof)
	if err != nil {
		return err
	}
	return tlog.CheckRecord(tlog.RecordProof(proof), cp.size, cp.root, inc.Index, tlog.RecordHash(leaf))
}

func checkConsistency(oldCP, newCP *checkpoint, list []string) error {
	if oldCP == nil || newCP == nil {
		return errors.New("a checkpoint of the pair did not verify")
	}
	proof, err := parseHashes(list)
	if err != nil {
		return err
	}
	return tlog.CheckTree(tlog.TreeProof(proof), newCP.size, newCP.root, oldCP.size, oldCP.root)
}

// tlogProof is a parsed c2sp.org/tlog-proof@v1 file.
type tlogProof struct {
	extra      []byte
	index      int64
	hashes     []tlog.Hash
	checkpoint []byte
}

// parseTlogProof parses the header line, an optional "extra <base64>" line,
// the "index <n>" line, the inclusion-path hashes up to a blank line, and
// takes everything after the blank line as the checkpoint note, verbatim.
func parseTlogProof(text string) (*tlogProof, error) {
	rest := text
	next := func() (string, error) {
		line, after, found := strings.Cut(rest, "\n")
		if !found {
			return "", errors.New("tlog-proof: truncated")
		}
		rest = after
		return line, nil
	}
	line, err := next()
	if err != nil {
		return nil, err
	}
	if line != tlogProofHeader {
		return nil, fmt.Errorf("tlog-proof: header is %q, want %q", line, tlogProofHeader)
	}
	p := &tlogProof{}
	if line, err = next(); err != nil {
		return nil, err
	}
	if b64, ok := strings.CutPrefix(line, "extra "); ok {
		p.extra, err = base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("tlog-proof: extra: %w", err)
		}
		if line, err = next(); err != nil {
			return nil, err
		}
	}
	idx, ok := strings.CutPrefix(line, "index ")
	if !ok {
		return nil, fmt.Errorf("tlog-proof: expected index line, got %q", line)
	}
	if p.index, err = parseDecimal(idx); err != nil {
		return nil, fmt.Errorf("tlog-proof: index: %w", err)
	}
	for {
		if line, err = next(); err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		if len(p.hashes) == 64 {
			return nil, errors.New("tlog-proof: more than 64 hashes")
		}
		h, err := parseHash(line)
		if err != nil {
			return nil, fmt.Errorf("tlog-proof: %w", err)
		}
		p.hashes = append(p.hashes, h)
	}
	if rest == "" {
		return nil, errors.New("tlog-proof: no checkpoint")
	}
	p.checkpoint = []byte(rest)
	return p, nil
}

func checkTlogProof(in tlogProofIn, known note.Verifiers) tlogProofOut {
	bad := func(err error) tlogProofOut { return tlogProofOut{Error: err.Error()} }
	leaf, err := decodeLeaf(in.LeafB64)
	if err != nil {
		return bad(err)
	}
	p, err := parseTlogProof(in.Text)
	if err != nil {
		return bad(err)
	}
	cp, err := openCheckpoint(p.checkpoint, known)
	if err != nil {
		return bad(err)
	}
	out := tlogProofOut{Origin: cp.origin, Size: &cp.size, Index: &p.index}
	if err := tlog.CheckRecord(tlog.RecordProof(p.hashes), cp.size, cp.root, p.index, tlog.RecordHash(leaf)); err != nil {
		out.Error = err.Error()
		return out
	}
	out.OK = true
	return out
}

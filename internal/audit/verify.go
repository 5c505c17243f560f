package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Problem is the first place an exported chain does not hold.
type Problem struct {
	// Line is the 1-based line of the export.
	Line int
	// Seq is the entry's sequence number as written (it may itself be the lie).
	Seq int64
	// What went wrong.
	Reason string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("line %d (seq %d): %s", p.Line, p.Seq, p.Reason)
}

// Verify reads an export (JSON lines, from the first entry) and checks the chain: each
// entry's hash is the hash of its content, each prev_hash is the previous entry's hash, and
// sequence numbers run 1, 2, 3... It returns the number of entries and the first Problem.
func Verify(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prev := GenesisHash
	var n int64
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return n, &Problem{Line: line, Reason: "not a JSON audit entry: " + err.Error()}
		}
		want := n + 1
		switch {
		case e.ComputeHash() != e.Hash:
			return n, &Problem{Line: line, Seq: e.Seq, Reason: "entry was altered: its content does not match its hash"}
		case e.PrevHash != prev && e.Seq > want:
			return n, &Problem{Line: line, Seq: e.Seq, Reason: fmt.Sprintf("entries missing before this one: expected seq %d", want)}
		case e.PrevHash != prev:
			return n, &Problem{Line: line, Seq: e.Seq, Reason: "chain broken: prev_hash does not match the previous entry (entry inserted, removed or reordered)"}
		case e.Seq != want:
			return n, &Problem{Line: line, Seq: e.Seq, Reason: fmt.Sprintf("sequence out of order: expected seq %d", want)}
		}
		prev = e.Hash
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("failed to read the export: %w", err)
	}
	return n, nil
}

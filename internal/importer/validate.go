package importer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/leadflow/leadflow/internal/conversion"
	"golang.org/x/sync/errgroup"
)

// scanResult is what the validation pass learned about the file.
type scanResult struct {
	// hash is the file's SHA-256.
	hash []byte
	// rows and invalid count the data rows and the invalid ones.
	rows, invalid int
	// bad holds the lines of the invalid rows: one bit per line, so that the
	// publishing pass skips them without validating again.
	bad bitset
}

// rowError is one problem of one invalid row.
type rowError struct {
	// Line is where the row starts in the file.
	Line int
	// Path is the JSON Pointer of the request field concerned ("" for the
	// whole row) and Column the CSV column it came from, when there is one.
	Path, Column string
	Message      string
}

func (e rowError) String() string {
	at := e.Path
	if at == "" {
		at = "row"
	}
	if e.Column != "" {
		at += " (column " + e.Column + ")"
	}
	return fmt.Sprintf("%d: %s: %s", e.Line, at, e.Message)
}

// validateFile reads the whole file once: it hashes it, and validates every
// row as the workers would (in parallel, reported in file order).
func (im *importer) validateFile(ctx context.Context) (*scanResult, error) {
	h := sha256.New()
	rows, b, closer, err := im.open(nil, h)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	im.progress.setPhase(phaseValidating)

	type job struct {
		seq int
		rec record
	}
	type result struct {
		seq, line int
		errs      []conversion.FieldError
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan job, 8*workers)
	results := make(chan result, 8*workers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		for seq := 0; ; seq++ {
			rec, err := rows.next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", im.path, err)
			}
			select {
			case jobs <- job{seq: seq, rec: rec}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				results <- result{seq: j.seq, line: j.rec.line, errs: validate(b.build(j.rec))}
			}
		})
	}
	g.Go(func() error {
		wg.Wait()
		close(results)
		return nil
	})

	scan := &scanResult{}
	// Results arrive out of order; the few that are early wait here.
	early := map[int]result{}
	next := 0
	for r := range results {
		early[r.seq] = r
		for {
			r, ok := early[next]
			if !ok {
				break
			}
			delete(early, next)
			next++
			scan.rows++
			im.progress.validated.Add(1)
			if len(r.errs) == 0 {
				continue
			}
			scan.invalid++
			scan.bad.set(r.line)
			for _, e := range r.errs {
				im.progress.report(im.path + ":" + rowError{Line: r.line, Path: e.Path, Column: b.columnOf(e.Path), Message: e.Message}.String())
			}
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	scan.hash = h.Sum(nil)
	im.sum.Rows, im.sum.Invalid = scan.rows, scan.invalid
	return scan, nil
}

// columnOf names the CSV column a request field came from, or "".
func (b *builder) columnOf(path string) string {
	for _, c := range b.cols {
		var p string
		switch c.kind {
		case colLead, colNumber:
			p = "/lead/" + c.name
		case colCustom:
			p = "/lead/custom/" + strings.ReplaceAll(strings.ReplaceAll(c.name, "~", "~0"), "/", "~1")
		case colKey:
			p = "/idempotency_key"
		case colOrg:
			p = "/org_id"
		}
		if path == p || strings.HasPrefix(path, p+"/") {
			return c.header
		}
	}
	return ""
}

// bitset is a set of small non-negative integers.
type bitset []uint64

func (s *bitset) set(i int) {
	for len(*s) <= i/64 {
		*s = append(*s, 0)
	}
	(*s)[i/64] |= 1 << (i % 64)
}

func (s bitset) has(i int) bool { return i/64 < len(s) && s[i/64]&(1<<(i%64)) != 0 }

package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LogStats is what the suite reads from leadflow's JSON log lines.
type LogStats struct {
	Lines int
	// Redeliveries is the number of distinct (stream sequence, delivery > 1)
	// pairs that some log line mentions.
	Redeliveries int
	// Replayed counts requests handled as a replay of a recorded outcome.
	Replayed int
	// Handled counts "request handled" lines.
	Handled int
	// DeadLettered counts "dead-lettered" lines.
	DeadLettered int
	// SlowestMS is the largest "took" (milliseconds) and whose it was.
	SlowestMS  float64
	SlowestKey string
	// Crashes counts Go panics and fatal errors in the output.
	Crashes      int
	CrashExample string
	// Warnings counts warn and error lines by message.
	Warnings map[string]int
}

type logLine struct {
	Level     string   `json:"level"`
	Message   string   `json:"message"`
	StreamSeq uint64   `json:"stream_seq"`
	Delivery  uint64   `json:"delivery"`
	Key       string   `json:"idempotency_key"`
	Took      *float64 `json:"took"`
	Replayed  bool     `json:"replayed"`
}

// readLogs parses leadflow log files.
func readLogs(paths []string) (*LogStats, error) {
	st := &LogStats{Warnings: map[string]int{}}
	redelivered := map[[2]uint64]bool{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 1<<20), 16<<20)
		for s.Scan() {
			line := s.Bytes()
			st.Lines++
			if bytes.HasPrefix(line, []byte("panic:")) || bytes.HasPrefix(line, []byte("fatal error:")) {
				st.Crashes++
				if st.CrashExample == "" {
					st.CrashExample = filepath.Base(p) + ": " + string(line)
				}
				continue
			}
			var l logLine
			if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &l) != nil {
				continue
			}
			if l.Delivery > 1 {
				redelivered[[2]uint64{l.StreamSeq, l.Delivery}] = true
			}
			switch {
			case l.Message == "request handled":
				st.Handled++
				if l.Replayed {
					st.Replayed++
				}
				if l.Took != nil && *l.Took > st.SlowestMS {
					st.SlowestMS, st.SlowestKey = *l.Took, l.Key
				}
			case strings.Contains(l.Message, "dead-lettered"):
				st.DeadLettered++
			}
			if l.Level == "warn" || l.Level == "error" || l.Level == "fatal" || l.Level == "panic" {
				st.Warnings[l.Level+": "+l.Message]++
			}
		}
		f.Close()
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
	}
	st.Redeliveries = len(redelivered)
	return st, nil
}

// PIIHit is one log file that holds a canary.
type PIIHit struct {
	File  string
	Count int
	// Probe counts the occurrences of the probe's marker (part of Count).
	Probe   int
	Example string
}

// grepCanaries searches every *.log file under dir for the PII canaries.
func grepCanaries(dir string) (files int, hits []PIIHit, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a store folder of a server still running may change under us
		}
		if d.IsDir() || !strings.HasSuffix(p, ".log") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		files++
		lower := bytes.ToLower(raw)
		h := PIIHit{File: p}
		for _, pat := range canaryPatterns {
			n := bytes.Count(lower, []byte(pat))
			if n > 0 && h.Example == "" {
				i := bytes.Index(lower, []byte(pat))
				start, end := max(0, i-80), min(len(raw), i+80)
				h.Example = string(raw[start:end])
			}
			h.Count += n
		}
		h.Probe = bytes.Count(lower, []byte(canaryProbe))
		if h.Count > 0 {
			hits = append(hits, h)
		}
		return nil
	})
	return files, hits, err
}

// replayedKeys returns the idempotency keys of requests handled as a replay.
func replayedKeys(paths []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 1<<20), 16<<20)
		for s.Scan() {
			var l logLine
			if json.Unmarshal(s.Bytes(), &l) == nil && l.Message == "request handled" && l.Replayed {
				out[l.Key] = true
			}
		}
		f.Close()
	}
	return out, nil
}

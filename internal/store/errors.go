package store

import (
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable reports whether err means the database cannot be reached (no
// connection, a connection lost, the server shutting down or out of
// connections): waiting for it is the cure, and the request is not at fault.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "53300"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "conn closed")
}

// Redact returns err's text with any PostgreSQL error message replaced by its
// SQLSTATE, severity and the names it carries (constraint, table, column):
// a message may quote the values of a row ("invalid input syntax for type
// uuid: ...", a trigger's RAISE), and logs must not carry lead content.
func Redact(err error) string {
	if err == nil {
		return ""
	}
	text := err.Error()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return text
	}
	safe := pgErr.Severity + " SQLSTATE " + pgErr.Code
	for _, kv := range [][2]string{{"table", pgErr.TableName}, {"column", pgErr.ColumnName}, {"constraint", pgErr.ConstraintName}} {
		if kv[1] != "" {
			safe += " " + kv[0] + " " + kv[1]
		}
	}
	if full := pgErr.Error(); strings.Contains(text, full) {
		return strings.Replace(text, full, safe, 1)
	}
	return safe
}

// requestFault reports whether a failed statement failed because of the
// data of the rows it wrote (a constraint, a trigger, a value out of range,
// a row too large), rather than the connection, the server or a race: a
// fault that writing each request apart pins on one of them.
func requestFault(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || retryable(err) || Unavailable(err) {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "2F", "38", "39", "44", "54", "P0":
		return true
	}
	return false
}

// retryable reports whether a transaction failed only because it raced
// another one (serialization failure, deadlock): run it again, decisions
// included.
func retryable(err error) bool {
	if errors.Is(err, errRace) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

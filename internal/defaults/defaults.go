// Package defaults fills in the unset fields of a configuration, one line
// a field, so that a Config's defaults read as a table.
//
// Files: defaults.go.
package defaults

// number is what a positive setting can be: counts, sizes, rates and
// durations.
type number interface {
	~int | ~int64 | ~float64
}

// Positive sets *v to def unless *v is above zero: a zero or negative
// setting means the default.
func Positive[T number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

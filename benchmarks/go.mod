module github.com/connpool/connpool/benchmarks

go 1.26.0

require (
	github.com/connpool/connpool v0.1.0
	github.com/jackc/puddle/v2 v2.2.3
)

require golang.org/x/sync v0.24.0 // indirect

replace github.com/connpool/connpool => ../

module github.com/branchml/djia30

go 1.26

require gonum.org/v1/gonum v0.16.0

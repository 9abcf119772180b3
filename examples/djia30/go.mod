module github.com/branchml/djia30

go 1.26

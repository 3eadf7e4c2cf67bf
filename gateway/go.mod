module github.com/rampart-go/rampart/gateway

go 1.26.0

require github.com/rampart-go/rampart/shared v0.0.0

replace github.com/rampart-go/rampart/shared => ../shared

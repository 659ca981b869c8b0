module github.com/messages-server/messages

go 1.26.8

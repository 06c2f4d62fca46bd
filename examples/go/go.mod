module hipattn

go 1.19

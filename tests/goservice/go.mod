module hotspan.test/goservice

go 1.19

module github.com/connpool/connpool/connpoolfleet

go 1.26.0

replace github.com/connpool/connpool => ../

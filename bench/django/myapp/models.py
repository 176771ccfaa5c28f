"""The models of the ancestor's documented example: customers buy products."""

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=255)
    email = models.EmailField()


class Product(models.Model):
    name = models.CharField(max_length=255)
    price = models.DecimalField(max_digits=10, decimal_places=2)


class Sale(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    quantity = models.IntegerField()

"""Flow tables: OpenFlow-style match/action rules, managed per bridge as plain values.

model.py holds the values (Match, Action, Rule), validate.py turns requests into canonical
rules with ovs-ofctl style messages, table.py is the per-bridge table manager (overlap checks,
replace, delete, expiry, conversion to datapath rules). Nothing here touches the kernel.
"""

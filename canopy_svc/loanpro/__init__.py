"""The LoanPro face: LoanPro's Customers API (LOANPRO.md) over the same rules and store as the Canopy
face (canopy_svc/api/), mounted in the same app under /api/public/api/1/."""

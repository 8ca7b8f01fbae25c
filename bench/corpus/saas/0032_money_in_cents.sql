ALTER TABLE "invoices" ADD COLUMN "total_cents" bigint;
--> statement-breakpoint
UPDATE "invoices" SET "total_cents" = round("total" * 100)::bigint;
--> statement-breakpoint
ALTER TABLE "invoices" ALTER COLUMN "total_cents" SET DEFAULT 0;
--> statement-breakpoint
ALTER TABLE "invoices" ALTER COLUMN "total_cents" SET NOT NULL;
--> statement-breakpoint
ALTER TABLE "invoices" DROP COLUMN IF EXISTS "total";
--> statement-breakpoint
ALTER TABLE "payments" RENAME COLUMN "amount" TO "amount_cents";
--> statement-breakpoint
ALTER TABLE "payments" ALTER COLUMN "amount_cents" SET DATA TYPE bigint USING round("amount_cents" * 100)::bigint;
--> statement-breakpoint
ALTER TABLE "invoice_items" ALTER COLUMN "quantity" SET DATA TYPE numeric(10, 3);
--> statement-breakpoint
ALTER TABLE "deals" ALTER COLUMN "value" SET DATA TYPE numeric(16, 2);

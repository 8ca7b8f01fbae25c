ALTER TABLE "customers" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "deals" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "tickets" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "customers_member_access" ON "customers" AS PERMISSIVE FOR ALL TO public USING ("customers"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid));
--> statement-breakpoint
CREATE POLICY "deals_owner_write" ON "deals" AS PERMISSIVE FOR UPDATE TO public USING ("deals"."owner_id" = nullif(current_setting('app.user_id', true), '')::uuid);
--> statement-breakpoint
CREATE POLICY "deals_member_read" ON "deals" AS PERMISSIVE FOR SELECT TO public USING ("deals"."customer_id" IN (SELECT "customers"."id" FROM "customers"));
--> statement-breakpoint
CREATE POLICY "tickets_member_access" ON "tickets" AS PERMISSIVE FOR ALL TO public USING ("tickets"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid));

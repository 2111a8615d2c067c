-- The root call of an execution is the execution row itself (its id is the root step's id);
-- only nested calls get rows in `steps`. The root's captured output lives here.
alter table executions add column stdout text not null default '';
alter table executions add column stderr text not null default '';

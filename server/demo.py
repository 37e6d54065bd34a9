"""Demo data: a fictional city, 青川市, with a year of field visits and a problem ledger.

``seed_demo`` fills an empty, migrated database with an area tree, responsible
units, categories, one account per demo role, and visits with people's diary
entries and problems, each problem with its full event history. Everything is
drawn from one ``random.Random(seed)``, so the same seed and ``now`` give
byte-identical tables (the shared password hash included: its salt comes from
the same generator).

Histories are written the way ``server.ledger.workflow.apply`` and the phone's
``problem.report`` (sync/mutations.py) write them: event kinds are the
workflow's action names, event data is ``json.dumps(..., sort_keys=True)`` with
the same keys, including ``overdue``, and every column an action sets (deadline,
signed_at, responded_in_time, outcome, callback answers, closed_on_time,
return_visit_due, supervision ...) is set as that action would have set it at the event's time.
The ledger office can carry on from any demo problem with the real workflow.

Every problem obeys these rules (tests/test_demo.py checks them), reading its
events in (at, rowid) order:

* the first event is ``reported`` (NULL → submitted) at found_at; each event's
  from_status is the status before it, to_status is NULL when it leaves the
  status alone, and the last non-NULL to_status is the problem's status; all
  events lie before ``now``;
* updated_at is the later of created_at (when the report reached the server)
  and the problem's last own event (``merged_in`` events, written on the
  original when a duplicate is merged into it, do not touch it);
* ledger_no and accepted_at are set exactly when the problem was accepted, or
  solved on the spot. Numbers run ZF-<year>-000001 upwards per year of
  acceptance (Asia/Shanghai) without gaps, in order of acceptance, and
  ledger_counters holds each year's last number. Duplicates are merged at
  intake, before acceptance, so merged problems have no number;
* the deadline runs from the first dispatch in working days (the Chinese
  holiday calendar of ``server.workdays``; Monday to Friday for years it does
  not know), starts again at the dispatch after a justified return
  (``accept_return``), and moves only by an extension that takes effect (the
  office's alone, or a leader's after the office's: ``server.ledger.rules``);
* a callback "solved but 不满意" waits for the office, who sends it back to the
  unit (``redo``) or closes it with an explanation (``close_explained``);
* a problem whose resident left no phone is never called back: the office
  closes it as 无回访对象 (``close_no_contact``); callbacks record their method
  and result as the workflow does;
* overdue problems get a 督办单 (``supervise``) or a leader's 挂牌 (``flag``) as
  ``server.ledger.supervision`` writes them: a ``supervision_orders`` row whose
  events carry its id and number. Numbers run DB-<year>-0001 upwards per year
  of issue without gaps, in order of generation (not strictly of time), and
  ledger_counters.supervision_last_no holds each year's last. Most orders are
  answered by a handler of the order's unit, most answered ones struck off, a
  few escalated (answered, or unanswered past their date, while the problem is
  open); about half the flags on closed problems are lifted after the closing;
* a helper unit (协办) of a dispatch has a ``joint_parts`` row as
  ``server.ledger.joint`` writes it: a re-dispatch that drops it removes it, its
  handler signs (``sign_part``) and answers (``answer_part``) with events carrying
  the unit and part ids, and the lead unit replies only once every current helper
  has answered or the office let it go ahead (``let_lead_reply``). Parts are left in
  every state (待签收, 已签收, 已答复, 已撤销). Their choices and times come from a
  generator of their own per problem, so the rest of the city is the same with or
  without them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import queue
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import argon2
import sqlite_utils

from server import auth, authz
from server.ledger.numbering import LEDGER_PREFIX
from server.settings import settings
from server.workdays import WorkCalendar

DEMO_PASSWORD = "demo1234"
CHUNK_PROBLEMS = 10_000
PROGRESS_EVERY = 100_000
HISTORY_DAYS = 365
HOUR = 3600
DAY = 86400

_LOCAL_OFFSET = 8 * 3600  # Asia/Shanghai has no daylight saving time
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_SET = (0x8000 << 48) | (0x4000 << 64)


class DemoDataExists(Exception):
    """The database already holds areas: demo data only goes into an empty one."""


@dataclass
class DemoAccount:
    username: str
    password: str
    role: str
    display_name: str
    scope: str  # the area or unit the account works in, as shown to the user


# --- Data pools -------------------------------------------------------------

CITY = ("青川市", 36.651, 117.012)
# (name, slug, urban); the fifth district is added for some seeds.
DISTRICTS = (
    ("东城区", "dc", True),
    ("西湖区", "xh", True),
    ("临溪县", "lx", False),
    ("白石县", "bs", False),
    ("凤鸣县", "fm", False),
)
STREETS = (
    ("文化路街道", "whl"), ("解放路街道", "jfl"), ("和平街道", "hpjd"), ("新华街道", "xhjd"),
    ("建设路街道", "jsl"), ("龙山街道", "lsjd"), ("花园路街道", "hyl"), ("东关街道", "dgjd"),
    ("南门街道", "nmjd"), ("翠屏街道", "cpjd"), ("湖滨街道", "hbjd"), ("柳荫街道", "lyjd"),
    ("青年路街道", "qnl"), ("朝阳街道", "cyjd"),
)
TOWNS = (
    ("城关镇", "cgz"), ("石桥镇", "sqz"), ("柳河镇", "lhz"), ("青山乡", "qsx"),
    ("马集镇", "mjz"), ("王庄乡", "wzx"), ("双河镇", "shz"), ("龙泉镇", "lqz"),
    ("杨柳镇", "ylz"), ("桃园乡", "tyx"), ("枣林镇", "zlz"), ("官庄镇", "gzz"),
    ("大河镇", "dhz"), ("白沙乡", "bsx"), ("高台镇", "gtz"), ("新集镇", "xjz"),
    ("黄山乡", "hsx"), ("梨园镇", "lyz"), ("两河口镇", "lhkz"), ("石门乡", "smx"),
)
COMMUNITY_NAMES = (
    "幸福", "和谐", "阳光", "翠苑", "锦绣", "春晖", "康乐", "民安", "福苑", "金桥", "绿园",
    "文苑", "书香", "明珠", "滨河", "枫林", "朝阳", "东苑", "西苑", "南苑", "北苑", "长青",
    "丽景", "紫荆", "银杏", "桂花", "海棠", "玉泉", "清泉", "龙湾", "凤凰", "映月", "青年",
    "工人新村", "铁路", "电厂", "棉纺厂", "水岸", "锦华", "怡景", "馨园", "嘉禾", "惠民",
    "安居", "兴隆", "泰和", "天桥", "古城", "文庙", "建设里", "民生", "新华园", "光明",
    "育才", "振兴", "北关", "南关", "花园", "柳园", "荷花池", "金色家园", "香榭里", "御景", "华苑",
    "龙城", "新城", "万象", "如意", "吉祥", "永安", "永康", "福寿", "长乐", "安泰", "和平里",
    "新风", "团结", "红星", "向阳", "东风", "跃进", "建新", "华新", "兴华", "振华", "东兴", "西城",
    "南城", "北城", "站前", "河东", "河西", "湖畔", "山水", "翠湖", "碧水", "绿洲", "云锦", "锦江",
)
VILLAGE_NAMES = (
    "杏花", "桃花", "梨树", "柳树", "河口", "东柳", "西坡", "南岭", "北山", "石门", "青石",
    "大王", "小李", "三里桥", "五里铺", "八里庄", "枣园", "柿子园", "槐树", "双井", "龙泉",
    "清水", "古井", "红旗", "前进", "胜利", "东升", "后营", "前营", "刘家庄", "张家洼",
    "王家店", "李家屯", "赵家岭", "陈家湾", "孙家集", "马家河", "杨家坡", "周家寨", "吴家楼",
    "郭家庄", "何家店", "高家洼", "林家屯", "徐家岭", "韩家湾", "曹家集", "许家河", "邓家坡",
    "冯家寨", "宋家楼", "唐家庄", "彭家店", "董家洼", "袁家屯", "于家岭", "蒋家湾", "田家集",
    "任家河", "潘家坡", "崔家寨", "葛家楼", "黄土坡", "白杨", "新庄", "老官屯", "西河沿",
    "东河沿", "南洼", "北洼", "大柳树", "小柳树", "上庄", "下庄", "中庄", "半坡", "石佛",
    "龙王庙", "关帝庙", "三官庙", "九龙", "凤山", "卧牛", "马鞍山", "鹰嘴", "泉头", "井峪",
    "榆林", "松林", "桑园", "苇子", "芦庄", "蒲家", "薛家", "贾家", "丁家", "魏家",
    "叶家", "夏家", "钟家", "汪家", "谭家", "廖家", "邹家", "熊家", "孔家", "白家", "康家",
    "毛家", "邱家", "秦家", "江家", "史家", "顾家", "侯家", "邵家", "孟家", "龙家", "万家",
    "段家", "雷家", "钱家", "汤家", "尹家", "黎家", "易家", "常家", "武家", "乔家", "贺家",
    "赖家", "龚家", "文家", "庞家", "樊家", "兰家", "殷家", "施家", "陶家", "洪家", "翟家",
    "安家", "颜家", "倪家", "严家", "牛家", "温家", "芦家", "季家", "俞家", "章家", "鲁家",
)
GRID_NAMES = ("第一网格", "第二网格", "第三网格")

SURNAMES = (
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高",
    "林", "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "程",
    "曹", "袁", "邓", "许", "傅", "沈", "曾", "彭", "吕", "苏", "卢", "蒋", "蔡", "贾", "丁",
    "魏", "薛", "叶", "余", "潘", "杜", "戴", "夏", "钟", "汪", "田", "任", "姜", "范", "方",
    "石", "姚", "谭", "廖", "邹", "熊", "金", "陆", "郝", "孔", "白", "崔", "康", "毛", "邱",
)
GIVEN_NAMES = (
    "建国", "建华", "国强", "志强", "秀英", "桂英", "秀兰", "玉兰", "海燕", "丽娟", "伟", "芳",
    "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
    "秀珍", "霞", "平", "刚", "桂兰", "红梅", "春梅", "德胜", "福来", "凤英", "淑珍", "振华",
    "永刚", "晓东", "晓燕", "俊杰", "子涵", "雨欣", "浩然", "梓萱", "思远", "婷婷", "建军",
    "卫东", "红霞", "金凤", "玉梅", "长青", "学文", "立新", "爱民", "守仁", "文博", "佳怡",
)
ADDRESS_FORMS = ("大爷", "大娘", "阿姨", "女士", "先生", "师傅")
MOBILE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
    "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "183", "185", "186",
    "187", "188", "189", "191", "198", "199",
)
ROADS = (
    "文化路", "解放路", "和平路", "建设路", "人民路", "新华街", "青年路", "工业南路", "花园路",
    "胜利街", "朝阳路", "滨河路", "环山路", "北园大街", "南关街", "育英街", "光明路", "民生大街",
)
SHOPS = ("便利店", "小饭馆", "理发店", "五金店", "药店", "早餐店", "农资店", "汽修店", "水果店")

# (slug, unit name); all sit on the city area.
CITY_UNITS = (
    ("zjj", "市住建局"),
    ("zrzy", "市自然资源和规划局"),
    ("sw", "青川水务集团"),
    ("jt", "市交通运输局"),
    ("jy", "市教育局"),
    ("scjg", "市市场监督管理局"),
    ("wjw", "市卫生健康委员会"),
    ("mz", "市民政局"),
    ("rs", "市人力资源和社会保障局"),
    ("sthj", "市生态环境局"),
    ("yj", "市应急管理局"),
    ("xf", "市消防救援支队"),
    ("cg", "市城市管理局"),
    ("gd", "国网青川供电公司"),
    ("tx", "市通信管理办公室"),
    ("nync", "市农业农村局"),
    ("bdc", "市不动产登记中心"),
    ("xzsp", "市行政审批服务局"),
    ("ga", "市公安局"),
)


@dataclass(frozen=True)
class _CategorySpec:
    code: str
    name: str
    unit_slug: str
    time_limit_days: int
    urban_weight: int
    rural_weight: int
    issues: tuple[str, ...]
    effects: tuple[str, ...]
    fixes: tuple[str, ...]
    return_visit_days: int = 30  # 回头看 this many days after closing
    located: bool = True  # False: the issue is not about one spot, so no landmark is named


CATEGORY_SPECS = (
    _CategorySpec(
        "water", "供水", "sw", 5, 10, 5,
        ("小区二次供水水压不足，高峰期五楼以上停水", "自来水管道漏水，路面长期积水",
         "自来水发黄、有异味", "水表井盖破损缺失", "供水管网老化，频繁爆管",
         "停水前没有提前通知"),
        ("居民生活用水困难", "老人孩子用水不便", "冬季结冰容易滑倒", "存在安全隐患"),
        ("已更换老化供水管道", "已调整二次供水加压设备", "已补装水表井盖", "已冲洗管网并检测水质"),
    ),
    _CategorySpec(
        "housing", "住房", "zjj", 15, 8, 4,
        ("老旧楼房屋顶漏水，雨天室内渗水严重", "楼道墙皮大面积脱落", "外墙保温层脱落",
         "危房改造进度缓慢", "老旧小区改造后遗留问题未整改", "单元门禁损坏"),
        ("住户生活受影响", "存在高空坠物隐患", "群众意见较大", "影响房屋安全"),
        ("已完成屋面防水维修", "已修复楼道墙面", "已对外墙保温层进行加固", "已更换单元门禁"),
        return_visit_days=60,
    ),
    _CategorySpec(
        "roads", "道路交通", "jt", 20, 9, 10,
        ("断头路多年未打通，需绕行两公里", "路面坑洼破损", "路灯损坏，夜间照明不足",
         "缺少减速带和人行横道", "公交线路调整后站点太远", "桥梁护栏破损", "雨后道路积水严重"),
        ("群众出行不便", "夜间行人安全得不到保障", "学生上下学存在安全隐患", "多次发生剐蹭事故"),
        ("已修补破损路面", "已维修更换路灯", "已施划人行横道并设置减速带",
         "断头路打通工程已列入年度计划并开工", "已修复桥梁护栏"),
        return_visit_days=90,
    ),
    _CategorySpec(
        "elderly", "养老", "mz", 10, 6, 8,
        ("社区养老服务站开放时间短", "老年食堂供餐不稳定", "高龄津贴未按时发放",
         "独居老人缺少定期探视", "养老服务中心缺少护理人员", "适老化改造申请无人受理"),
        ("老年人生活不便", "老人及家属意见较大", "养老服务落实不到位"),
        ("已延长养老服务站开放时间", "已协调老年食堂恢复正常供餐", "已补发高龄津贴",
         "已安排网格员定期探视独居老人"),
        located=False,
    ),
    _CategorySpec(
        "education", "教育", "jy", 10, 6, 6,
        ("学校食堂饭菜质量差、价格偏高", "学校门口上下学时段交通拥堵", "学位紧张，入学难",
         "课后托管服务收费不透明", "校舍墙体开裂", "校车接送时间不合理"),
        ("家长反映强烈", "影响学生正常学习生活", "存在安全隐患"),
        ("已督促学校整改食堂管理并公示价格", "已安排交警和志愿者高峰期疏导",
         "已公示课后服务收费标准", "已完成校舍加固维修"),
        located=False,
    ),
    _CategorySpec(
        "medical", "医疗", "wjw", 10, 5, 8,
        ("村卫生室缺医少药", "社区卫生服务站常用药短缺", "医保报销手续繁琐",
         "家庭医生签约后未上门服务", "卫生院夜间无值班医生"),
        ("群众看病不便", "慢性病患者取药困难", "群众意见较大"),
        ("已补充常用药品配备", "已简化报销流程并开通线上办理", "已安排家庭医生上门随访",
         "已落实卫生院夜间值班制度"),
        located=False,
    ),
    _CategorySpec(
        "employment", "就业", "rs", 10, 5, 5,
        ("农民工工资被拖欠", "灵活就业人员社保缴费不便", "公益性岗位信息不公开",
         "职业技能培训报名难", "就业补贴迟迟未到账"),
        ("涉及务工人员十余人", "群众生活受到影响", "群众反映多次未果"),
        ("已督促用工单位足额支付拖欠工资", "已开通社保线上缴费渠道", "已公开公益性岗位招聘信息",
         "已发放就业补贴"),
        located=False,
    ),
    _CategorySpec(
        "sanitation", "环境卫生", "cg", 5, 9, 8,
        ("垃圾清运不及时，堆放散发异味", "公厕长期无人保洁", "河道有漂浮垃圾", "餐饮油烟扰民",
         "建筑垃圾乱倒乱放", "夜间施工噪音扰民"),
        ("影响周边环境", "夏季蚊蝇滋生", "居民休息受到影响"),
        ("已清运堆积垃圾并增加清运频次", "已安排专人保洁公厕", "已清理河道漂浮物",
         "已督促餐饮商户安装油烟净化设备", "已责令施工单位调整作业时间"),
    ),
    _CategorySpec(
        "fire", "消防安全", "xf", 5, 8, 4,
        ("消防通道被私家车长期占用", "楼道堆放杂物，电动车飞线充电", "小区消防栓无水",
         "沿街商铺私拉电线", "灭火器过期未更换", "群租房存在消防隐患"),
        ("一旦发生火情后果严重", "存在重大安全隐患", "居民担心安全"),
        ("已清理楼道杂物并设置集中充电区", "已施划消防通道标线并加强巡查",
         "已维修小区消防栓", "已更换过期灭火器"),
    ),
    _CategorySpec(
        "food", "食品安全", "scjg", 5, 6, 4,
        ("学校食堂后厨卫生差", "流动摊贩无证经营", "超市销售过期食品",
         "农贸市场肉类来源不明", "小饭馆未公示健康证"),
        ("影响群众饮食安全", "存在食品安全隐患", "家长担心孩子饮食安全"),
        ("已对食堂后厨开展专项检查并责令整改", "已依法查处无证经营行为",
         "已下架过期食品并立案调查", "已督促商户公示健康证明"),
        located=False,
    ),
    _CategorySpec(
        "property", "物业管理", "zjj", 10, 10, 1,
        ("物业服务差、收费高", "物业撤离后小区无人管理", "电梯频繁故障，物业维修不及时",
         "物业擅自占用公共收益", "小区监控长期损坏", "绿化带被毁种菜"),
        ("业主意见很大", "小区环境脏乱", "老人上下楼困难"),
        ("已约谈物业企业并责令限期整改", "已引入临时物业进驻服务", "已完成电梯维修并通过检验",
         "已公示公共收益收支情况"),
    ),
    _CategorySpec(
        "business", "营商环境", "xzsp", 7, 6, 3,
        ("营业执照办理需要跑多次", "政务服务大厅窗口排队时间长", "企业开办材料反复提交",
         "工程款拖欠中小企业", "涉企检查过多过频"),
        ("企业负担加重", "影响企业正常经营", "企业反映强烈"),
        ("已推行一次告知、一窗受理", "已增设服务窗口并开通预约办理", "已协调拨付拖欠工程款",
         "已统筹合并涉企检查事项"),
        located=False,
    ),
    _CategorySpec(
        "rural_water", "农村水利", "nync", 15, 0, 9,
        ("灌溉渠道淤堵，农田浇地困难", "机井损坏无法灌溉", "村里饮水工程水压低",
         "河道护坡坍塌", "塘坝渗漏"),
        ("影响春耕生产", "涉及农田三百余亩", "汛期存在安全隐患"),
        ("已完成渠道清淤", "已维修机井并恢复灌溉", "已加装饮水工程加压设备", "已修复河道护坡"),
        return_visit_days=90,
    ),
    _CategorySpec(
        "power_telecom", "电力通讯", "gd", 5, 5, 6,
        ("频繁停电，电压不稳", "线杆倾斜存在安全隐患", "手机信号差，宽带未通",
         "电线私拉乱接", "小区充电桩安装难"),
        ("群众生活受影响", "存在触电隐患", "影响线上办事和学生上网课"),
        ("已更换变压器并改造低压线路", "已扶正加固线杆", "已协调运营商新建通信基站",
         "已规范整理线路"),
    ),
    _CategorySpec(
        "real_estate", "不动产登记", "bdc", 20, 6, 3,
        ("房屋多年办不下不动产权证", "回迁房未办理产权证", "不动产登记窗口办事难",
         "宅基地确权登记有误"),
        ("影响子女入学和房屋交易", "涉及住户一百余户", "群众反映多年未解决"),
        ("已启动历史遗留问题专项办证", "已为回迁户集中办理产权证", "已开通登记预约和延时服务",
         "已更正宅基地确权登记信息"),
        located=False,
        return_visit_days=60,
    ),
)

URBAN_PLACES = (
    "{n}号楼{u}单元", "{n}号楼北侧", "小区东门", "小区南门口", "地下车库入口", "社区卫生服务站旁",
    "农贸市场西侧", "公交站台附近", "沿街商铺", "{road}{n}号", "小区中心广场", "幼儿园门口",
)
RURAL_PLACES = (
    "村东头", "村西{n}组", "村委会南侧", "{surname}家胡同口", "村小学门口", "村卫生室",
    "进村道路", "机井房旁", "灌溉渠边", "村北桥头", "{n}组", "文化广场", "养殖区",
)
DESCRIPTION_TAILS = (
    "", "", "群众多次反映未解决。", "涉及住户约{n}户。", "已持续{n}个多月。", "群众希望尽快解决。",
    "现场查看情况属实。",
)
REMARKS = (
    "对村里新修的文化广场表示满意", "询问城乡居民医保缴费时间和标准",
    "希望社区多组织老年人文体活动",
    "反映近期治安状况良好，夜间巡逻到位", "对网格员上门服务表示感谢",
    "介绍今年小麦收成情况，预计亩产与去年持平", "咨询灵活就业人员养老保险缴费政策，已现场解答",
    "建议在小区增设快递柜", "对老旧小区改造效果表示认可", "询问孩子入学报名时间，已告知",
)
DIARY_LEADS = {
    "resident": ("反映", "向我们反映", "说"),
    "business": ("企业负责人反映", "个体户反映"),
    "cadre": ("社区干部介绍", "村干部介绍"),
    "other": ("过往群众反映",),
}
WISHES = ("希望尽快解决。", "希望有关部门重视。", "", "已记录并承诺跟进。")

VISIT_METHODS = ("sbls", "ruhu", "dundian", "xianchang", "jiefang", "other")
VISIT_METHOD_WEIGHTS = (40, 20, 12, 12, 10, 6)
# Duration in minutes, (shortest, longest).
VISIT_DURATIONS = {
    "sbls": (60, 180), "ruhu": (60, 180), "dundian": (240, 480),
    "xianchang": (120, 240), "jiefang": (120, 240), "other": (60, 150),
}
CHECKLIST_ALL = '["no_notice","no_greeting","no_briefing","no_escort",' \
    '"direct_grassroots","direct_scene"]'
CHECKLISTS = {
    "sbls": (CHECKLIST_ALL,),
    "ruhu": ('["no_notice","direct_grassroots"]', '["direct_grassroots"]',
             '["no_notice","no_escort","direct_grassroots"]'),
    "dundian": ('["direct_grassroots","direct_scene"]',
                '["no_escort","direct_grassroots","direct_scene"]'),
    "xianchang": ('["direct_scene"]', '["direct_grassroots","direct_scene"]'),
    "jiefang": ("[]",),
    "other": ("[]", '["direct_grassroots"]'),
}
COMPANION_ORGS = ("市委督查室", "区委办公室", "镇综治中心", "县信访局", "街道党工委", "市住建局")

PERSON_KINDS = ("resident", "business", "cadre", "other")
PERSON_KIND_WEIGHTS = (70, 10, 15, 5)
URGENCIES = ("normal", "urgent", "critical")
URGENCY_WEIGHTS = (85, 12, 3)

STATUSES = (
    "submitted", "accepted", "dispatched", "handling", "returned",
    "replied", "callback", "closed", "rejected", "merged",
)
# Status weights by how long ago the problem was found: old problems are mostly closed.
STATUS_WEIGHTS_BY_AGE = (
    (3, (25, 15, 20, 20, 2, 5, 3, 5, 3, 2)),
    (15, (3, 4, 8, 30, 3, 10, 7, 30, 3, 2)),
    (45, (0.5, 1, 2, 12, 1, 4, 4, 70, 3, 2.5)),
    (None, (0.1, 0.2, 0.5, 3, 0.3, 0.8, 1, 88, 3.5, 3)),
)

OUTCOMES = ("solved", "partial", "explained", "untrue")
OUTCOME_WEIGHTS = (88, 7, 4, 1)
# The workflow's supervision actions and the level each one sets, weakest first.
SUPERVISION_LEVELS = {"remind": "reminded", "supervise": "supervised", "flag": "flagged"}
SUPERVISION_ORDER = ("none", "reminded", "supervised", "flagged")

# (the reason's code in the list of server/ledger/reasons.py, the note)
REJECT_NOTES = (
    ("out_of_scope", "属于司法程序处理事项，已告知群众通过诉讼途径解决"),
    ("unreasonable", "经核实反映情况与事实不符，已向群众解释说明"),
    ("out_of_scope", "属于邻里纠纷，已引导群众通过人民调解解决"),
    ("out_of_scope", "属于企业内部经营事项，不予立案"),
    ("duplicate", "与此前反映的问题重复，已告知群众办理进度"),
    ("unverifiable", "反映内容不完整，且无法联系反映人核实"),
)
ACCEPT_NOTES = ("经核实，情况属实，予以立案", "立案办理", "情况属实，立案交办")
MERGE_NOTE = "与已立案的同类问题重复，合并办理"
RETURN_NOTE = "经核实不属于本单位职责，建议交由{unit}办理"
RETURN_REASON = "not_our_duty"
PROGRESS_NOTES = (
    "已组织人员现场勘查，制定整改方案", "已联系相关责任方，正在协调解决",
    "整改工作正在推进，预计近期完成", "已电话联系反映人，告知办理进度",
    "已申请专项资金，待批复后实施",
)
EXTENSION_NOTES = (  # (the reason's code, the note)
    ("departments", "需协调多个部门联合处置，申请延期"),
    ("long_works", "整改工程量较大，需延长办理时限"),
    ("funding", "涉及资金审批，申请延期办理"),
    ("season", "雨季不具备施工条件，申请延期办理"),
)
APPROVE_NOTE = "同意延期"
REFUSE_NOTE = "延期理由不充分，请按原时限办结"
REPLY_NOTES = {
    "solved": "{fix}，经现场核查问题已解决",
    "partial": "{fix}，剩余部分已列入计划，近期完成",
    "explained": "经调查核实，该事项需纳入下一年度计划统一实施，已向群众做好解释",
    "untrue": "经现场核实，反映情况与实际不符，已向群众说明",
}
SEND_BACK_NOTE = "答复材料不完整，请补充整改前后照片"
ACCEPT_RETURN_NOTE = "退单理由成立，另行交办"
REFUSE_RETURN_NOTE = "经核实属于本单位职责，请按原时限办理"
LEADER_APPROVE_NOTE = "同意延期，请抓紧办理"
LEADER_REFUSE_NOTE = "不同意延期，请加派力量按原时限办结"
REDO_NOTE = "群众对办理结果不满意，请重新办理"
EXPLAIN_NOTE = "已按政策标准办理到位，群众诉求超出标准，已解释说明"
EXPLAIN_REASON = "policy"
VERIFY_NOTE = "答复材料齐全，转回访"
SUPERVISION_NOTES = {
    "remind": "距办理时限不足3个工作日，请抓紧办理",
    "supervise": "已超过办理时限，请说明原因并加快办理",
    "flag": "列入挂牌督办，请单位主要负责同志亲自过问",
}
SUPERVISION_ANSWER_NOTES = (
    "已召开专题会研究，明确专人负责，预计一周内办结",
    "超时原因为需协调相关单位，现已完成现场核查，正在整改",
    "已列入本月重点工作，主要负责同志已到现场督促",
)
SUPERVISION_CLOSE_NOTE = "督办回复属实，予以销号"
SUPERVISION_ESCALATE_NOTE = "督办后仍未落实，提请领导挂牌督办"
SUPERVISION_UNFLAG_NOTE = "问题已办结，经核实予以摘牌"
JOINT_SIGN_NOTE = "已签收协办，安排人员配合"
JOINT_OPINIONS = (
    "经现场核查，本单位职责范围内事项已配合处理完毕",
    "已派员配合主办单位现场处置，相关设施已恢复",
    "本单位已出具意见：同意主办单位处置方案，配合做好后续监管",
)
LET_LEAD_REPLY_NOTE = "协办单位逾期未答复，准许主办单位先行答复"
JOINT_KINDS = frozenset({"sign_part", "answer_part", "let_lead_reply"})
CALLBACK_NOTES = {
    "satisfied": "电话回访，群众表示问题已解决，满意",
    "basically": "电话回访，群众表示问题已解决，基本满意",
    "unsatisfied": "电话回访，群众表示问题已解决，但对办理过程不满意",
}
UNREACHED_NOTE = "电话回访未接通"
NO_CONTACT_NOTE = "反映人未留联系方式，无回访对象"
REOPEN_NOTE = "电话回访，群众反映问题仍未解决，请承办单位继续办理"
RETURN_VISIT_NOTES = ("回头看：整改效果保持良好", "回头看：现场查看未出现反弹")
SOLVED_ON_SPOT_NOTES = (
    "走访时现场协调解决", "现场联系物业当场处理完毕", "已现场督促相关单位立即整改到位",
)


# --- Small helpers ------------------------------------------------------------


def _uuid4(rng: random.Random) -> str:
    """The text of ``uuid.UUID(int=rng.getrandbits(128), version=4)``, without the object."""
    digits = f"{rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class _Clock:
    """Epoch seconds as ``timeutil.to_iso`` writes them, and working days; both cached.

    Days are counted as integers since 1970-01-01; "local" means Asia/Shanghai.
    """

    def __init__(self, calendar: WorkCalendar | None = None) -> None:
        self.calendar = calendar
        self._days: dict[int, str] = {}
        self._hours: dict[int, str] = {}
        self._working_days: dict[tuple[int, int], int] = {}

    @staticmethod
    def local_day(ts: int) -> int:
        return (ts + _LOCAL_OFFSET) // DAY

    def day_text(self, day: int) -> str:
        text = self._days.get(day)
        if text is None:
            text = self._days[day] = dt.date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
        return text

    def iso(self, ts: int) -> str:
        hour, seconds = divmod(ts, 3600)
        prefix = self._hours.get(hour)
        if prefix is None:
            day, hour_of_day = divmod(hour, 24)
            prefix = self._hours[hour] = f"{self.day_text(day)}T{hour_of_day:02d}:"
        minutes, seconds = divmod(seconds, 60)
        return f"{prefix}{minutes:02d}:{seconds:02d}+00:00"

    def add_working_days(self, day: int, working_days: int) -> int:
        """The day ``working_days`` working days after ``day``, as the workflow counts them.

        Years the holiday calendar does not know count Monday to Friday.
        """
        key = (day, working_days)
        result = self._working_days.get(key)
        if result is None:
            start = dt.date.fromordinal(day + _EPOCH_ORDINAL)
            result = self.calendar.add_working_days_or_weekdays(start, working_days)
            result = self._working_days[key] = result.toordinal() - _EPOCH_ORDINAL
        return result


def _person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)


def _mobile(rng: random.Random) -> str:
    return f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def _landline(rng: random.Random) -> str:
    return f"0531-{rng.randrange(8100_0000, 8999_9999)}"


def _demo_password_hash(rng: random.Random) -> str:
    """Hash the demo password with the configured argon2 parameters and a seeded salt.

    ``auth.hash_password`` picks a random salt, which would make two seeded
    databases differ; its output tells which parameters are configured.
    """
    parameters = argon2.extract_parameters(auth.hash_password(DEMO_PASSWORD))
    hasher = argon2.PasswordHasher.from_parameters(parameters)
    return hasher.hash(DEMO_PASSWORD, salt=rng.randbytes(parameters.salt_len))


# --- The fixed world: areas, units, categories, users -------------------------


@dataclass(eq=False)
class _Area:
    code: str
    name: str
    level: int
    parent: _Area | None
    lat: float
    lng: float
    urban: bool
    slug: str = ""
    id: int = 0
    path: str = ""
    children: list[_Area] = field(default_factory=list)
    problem_areas: list[_Area] = field(default_factory=list)  # levels 4-5 at or below

    def ancestor(self, level: int) -> _Area:
        area = self
        while area.level > level:
            area = area.parent
        return area

    def subtree(self) -> Iterator[_Area]:
        yield self
        for child in self.children:
            yield from child.subtree()


@dataclass(eq=False)
class _Unit:
    id: int
    slug: str
    name: str
    area: _Area


@dataclass(eq=False)
class _Category:
    id: int
    spec: _CategorySpec
    unit: _Unit

    @property
    def return_visit_days(self) -> int:
        return self.spec.return_visit_days


@dataclass(eq=False)
class _FieldOfficial:
    user_id: int
    weight: int
    visit_areas: list[_Area]


@dataclass(eq=False)
class _World:
    areas: list[_Area]
    units: list[_Unit]
    categories: list[_Category]
    accounts: list[DemoAccount] = field(default_factory=list)
    field_officials: list[_FieldOfficial] = field(default_factory=list)
    handler_of_unit: dict[int, int] = field(default_factory=dict)
    offices_of_district: dict[int, tuple[int, ...]] = field(default_factory=dict)
    leaders_of_district: dict[int, tuple[int, ...]] = field(default_factory=dict)
    government_of_area: dict[int, _Unit] = field(default_factory=dict)


def _jitter(rng: random.Random, value: float, spread: float) -> float:
    return round(value + rng.uniform(-spread, spread), 6)


def _child(rng, parent: _Area, code: str, name: str, spread: float, slug: str = "") -> _Area:
    area = _Area(
        code, name, parent.level + 1, parent, _jitter(rng, parent.lat, spread),
        _jitter(rng, parent.lng, spread * 1.25), parent.urban, slug,
    )
    parent.children.append(area)
    return area


def _township_code_blocks(name: str) -> int:
    # 统计用区划代码: 街道 0xx, 镇 1xx, 乡 2xx.
    if name.endswith("街道"):
        return 0
    return 200 if name.endswith("乡") else 100


def _build_area_tree(rng: random.Random) -> _Area:
    city_name, lat, lng = CITY
    city = _Area("379900000000", city_name, 1, None, lat, lng, urban=True)
    district_count = rng.choice((4, 5))
    streets = rng.sample(STREETS, len(STREETS))
    towns = rng.sample(TOWNS, len(TOWNS))
    communities = iter(rng.sample(COMMUNITY_NAMES, len(COMMUNITY_NAMES)))
    villages = iter(rng.sample(VILLAGE_NAMES, len(VILLAGE_NAMES)))
    urban_codes, rural_codes = iter(range(2, 10)), iter(range(21, 30))
    for name, slug, urban in DISTRICTS[:district_count]:
        number = next(urban_codes) if urban else next(rural_codes)
        spread = 0.06 if urban else 0.3
        district = _child(rng, city, f"3799{number:02d}000000", name, spread, slug)
        district.urban = urban
        pool = streets if urban else towns
        taken: dict[int, int] = {}
        for _ in range(rng.randint(4, 6)):
            town_name, town_slug = pool.pop()
            block = _township_code_blocks(town_name)
            taken[block] = taken.get(block, 0) + 1
            town_code = f"{district.code[:6]}{block + taken[block]:03d}000"
            town = _child(rng, district, town_code, town_name, 0.02 if urban else 0.06, town_slug)
            _add_villages(rng, town, communities if urban else villages)
    return city


def _add_villages(rng: random.Random, town: _Area, names: Iterator[str]) -> None:
    # 居委会 codes start at 001, 村委会 codes at 201.
    first = 1 if town.urban else 201
    suffix = "社区" if town.urban else "村"
    for number in range(first, first + rng.randint(4, 8)):
        code = f"{town.code[:9]}{number:03d}"
        village = _child(rng, town, code, next(names) + suffix, 0.006 if town.urban else 0.015)
        for grid_number in range(1, rng.randint(2, 3) + 1):
            _child(rng, village, f"{code}{grid_number:03d}", GRID_NAMES[grid_number - 1], 0.002)


def _number_areas(city: _Area) -> list[_Area]:
    """Give ids level by level, so each level's ids are contiguous, and set paths."""
    levels: list[list[_Area]] = [[city]]
    while levels[-1]:
        levels.append([child for area in levels[-1] for child in area.children])
    areas = [area for level in levels for area in level]
    for area_id, area in enumerate(areas, start=1):
        area.id = area_id
        area.path = f"{area.parent.path if area.parent else '/'}{area_id}/"
    for area in areas:
        area.problem_areas = [a for a in area.subtree() if a.level >= 4]
    return areas


def _insert_areas(db: sqlite_utils.Database, areas: list[_Area]) -> None:
    db.executemany(
        "INSERT INTO areas (id, code, name, level, parent_id, path, lat, lng)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (a.id, a.code, a.name, a.level, a.parent.id if a.parent else None, a.path, a.lat, a.lng)
            for a in areas
        ],
    )


def _government_name(area: _Area) -> str:
    return f"{area.name}办事处" if area.name.endswith("街道") else f"{area.name}人民政府"


def _insert_units(db, rng: random.Random, city: _Area) -> list[_Unit]:
    """City bureaus, each district's government, and the first township's of each district."""
    plan = [(slug, name, city) for slug, name in CITY_UNITS]
    for district in city.children:
        plan.append((district.slug, _government_name(district), district))
    for district in city.children:
        town = district.children[0]
        plan.append((town.slug, _government_name(town), town))
    units = [_Unit(n, slug, name, area) for n, (slug, name, area) in enumerate(plan, start=1)]
    db.executemany(
        "INSERT INTO units (id, name, area_id, contact_name, contact_phone) VALUES (?, ?, ?, ?, ?)",
        [(u.id, u.name, u.area.id, _person_name(rng), _landline(rng)) for u in units],
    )
    return units


def _insert_categories(db, units: list[_Unit]) -> list[_Category]:
    unit_by_slug = {unit.slug: unit for unit in units}
    categories = [
        _Category(n, spec, unit_by_slug[spec.unit_slug])
        for n, spec in enumerate(CATEGORY_SPECS, start=1)
    ]
    db.executemany(
        "INSERT INTO categories (id, code, name, default_unit_id, time_limit_days,"
        " return_visit_days) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (c.id, c.spec.code, c.spec.name, c.unit.id, c.spec.time_limit_days,
             c.spec.return_visit_days)
            for c in categories
        ],
    )
    return categories


@dataclass(frozen=True)
class _Roster:
    username: str
    role: str
    area: _Area
    unit: _Unit | None = None
    visit_weight: int = 0


def _roster(city: _Area, units: list[_Unit]) -> list[_Roster]:
    east, west, first_county, second_county = city.children[:4]
    people = [
        _Roster("admin", authz.ADMIN, city),
        _Roster("office", authz.OFFICE, city),
        _Roster("office_dc", authz.OFFICE, east),
        _Roster("leader", authz.LEADER, city),
        _Roster("leader_dc", authz.LEADER, east),
        _Roster("field", authz.FIELD, east.children[0], visit_weight=20),
        _Roster("field2", authz.FIELD, first_county.children[0], visit_weight=20),
        _Roster("field3", authz.FIELD, west, visit_weight=15),
        _Roster("field4", authz.FIELD, second_county, visit_weight=15),
        _Roster("field5", authz.FIELD, city, visit_weight=30),
    ]
    people += [_Roster(f"handler_{u.slug}", authz.HANDLER, u.area, u) for u in units]
    return people


def _insert_users(db, rng: random.Random, world: _World, city: _Area, now_iso: str) -> None:
    password_hash = _demo_password_hash(rng)
    rows = []
    for user_id, person in enumerate(_roster(city, world.units), start=1):
        display_name = _person_name(rng)
        rows.append((
            user_id, person.username, display_name, _mobile(rng), authz.format_roles([person.role]),
            person.area.id, person.unit.id if person.unit else None, password_hash, now_iso,
            now_iso,
        ))
        scope = person.unit.name if person.unit else person.area.name
        world.accounts.append(
            DemoAccount(person.username, DEMO_PASSWORD, person.role, display_name, scope)
        )
        if person.unit:
            world.handler_of_unit[person.unit.id] = user_id
        if person.visit_weight:
            visit_areas = [a for a in person.area.subtree() if 3 <= a.level <= 5]
            world.field_officials.append(_FieldOfficial(user_id, person.visit_weight, visit_areas))
        _register_supervisor(world, person, user_id, city)
    db.executemany(
        "INSERT INTO users (id, username, display_name, phone, roles, area_id, unit_id,"
        " password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _register_supervisor(world: _World, person: _Roster, user_id: int, city: _Area) -> None:
    """Remember which office and leader accounts act on each district's problems."""
    registries = {authz.OFFICE: world.offices_of_district, authz.LEADER: world.leaders_of_district}
    registry = registries.get(person.role)
    if registry is None:
        return
    districts = city.children if person.area is city else [person.area]
    for district in districts:
        registry[district.id] = (*registry.get(district.id, ()), user_id)


def _build_world(db, rng: random.Random, now_iso: str) -> _World:
    city = _build_area_tree(rng)
    areas = _number_areas(city)
    _insert_areas(db, areas)
    units = _insert_units(db, rng, city)
    world = _World(areas, units, _insert_categories(db, units))
    for unit in units:
        if unit.area is not city:
            world.government_of_area[unit.area.id] = unit
    _insert_users(db, rng, world, city, now_iso)
    return world


# --- Visits, diaries, problems and their histories -----------------------------

_VISIT_SQL = (
    "INSERT INTO visits (id, author_id, area_id, place, method, checklist, companions,"
    " started_at, ended_at, lat, lng, accuracy_m, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DIARY_SQL = (
    "INSERT INTO diary_entries (id, visit_id, author_id, area_id, person_name, person_kind,"
    " phone, address, content, recorded_at, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The problem columns the history sets, in the order of _History.columns().
WORKFLOW_COLUMNS = (
    "status", "accepted_at", "lead_unit_id", "helper_unit_ids", "dispatched_at", "deadline",
    "original_deadline", "extension_request", "signed_at", "resident_contacted", "replied_at",
    "outcome", "redo_count", "callback_reached", "callback_solved", "satisfaction",
    "closed_at", "closed_on_time", "return_visit_due", "return_visit_result", "supervision",
    "supervision_note", "merged_into", "responded_in_time", "closure_kind",
    "reject_reason_code", "return_reason_code", "extension_reason_code", "explained_reason_code",
    "unit_dispatched_at", "extension_count", "unjustified_returns", "redo_pending",
    "closure_reason",
)
PROBLEM_COLUMNS = (
    "id", "ledger_no", "reporter_id", "visit_id", "diary_id", "area_id", "place", "lat", "lng",
    "category_id", "urgency", "description", "resident_name", "resident_phone",
    "suggested_unit_id", "source", "solved_on_spot", "found_at", "created_at", "updated_at",
    *WORKFLOW_COLUMNS,
)
_PROBLEM_SQL = (
    f"INSERT INTO problems ({', '.join(PROBLEM_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(PROBLEM_COLUMNS))})"
)
_ORDER_COLUMNS = (
    "id", "problem_id", "number", "kind", "requirement", "answer_by", "issued_by", "issued_at",
    "unit_id", "answer", "answered_by", "answered_at", "closed_by", "closed_at", "outcome",
)
_ORDER_SQL = (
    f"INSERT INTO supervision_orders ({', '.join(_ORDER_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_ORDER_COLUMNS))})"
)
_PART_COLUMNS = (
    "id", "problem_id", "unit_id", "state", "dispatched_at", "dispatched_by", "signed_at",
    "signed_by", "answered_at", "answered_by", "opinion", "answer_event_id", "removed_at",
    "removed_by",
)
_PART_SQL = (
    f"INSERT INTO joint_parts ({', '.join(_PART_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_PART_COLUMNS))})"
)
_EVENT_SQL = (
    "INSERT INTO problem_events (id, problem_id, kind, actor_id, at, from_status, to_status,"
    " note, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

FINISHED = ("closed", "rejected", "merged")
# Placeholders in event data for ledger numbers, which are given only after generation.
_LEDGER_NO = "@ledger_no@"
_ORIGINAL_NO = "@original_no@"


@dataclass(eq=False)
class _Topic:
    category: _Category
    issue: str
    effect: str


@dataclass(eq=False)
class _Source:
    """Where a problem came from: a visit (maybe a diary entry), a direct report or the hotline."""

    kind: str  # problems.source: visit, field or hotline
    reporter_id: int
    area: _Area
    found_ts: int
    visit_id: str | None = None
    diary_id: str | None = None
    resident_name: str = ""
    resident_phone: str = ""


class _Step:
    """One event: ``delay`` seconds after the previous one until placed in time."""

    __slots__ = ("kind", "actor", "to_status", "note", "args", "delay", "at", "from_status", "data",
                 "event_id")

    def __init__(self, kind, actor, to_status, note, args, delay):
        self.kind = kind
        self.actor = actor
        self.to_status = to_status  # None: the event leaves the status as it is
        self.note = note
        self.args = args
        self.delay = delay
        self.at = 0
        self.from_status = None
        self.data = "{}"
        self.event_id = None


class _Order:
    """A supervision order or flag as server.ledger.supervision writes it; numbered on replay."""

    __slots__ = ("kind", "unit", "answer_by", "id", "number", "requirement", "issued_by",
                 "issued_at", "answer", "answered_by", "answered_at", "closed_by", "closed_at",
                 "outcome")

    def __init__(self, kind: str, unit: _Unit):
        self.kind = kind  # the action that issued it: 'supervise' or 'flag'
        self.unit = unit
        self.answer_by = self.number = self.requirement = self.answer = self.outcome = None
        self.id = self.issued_by = self.issued_at = self.answered_by = self.answered_at = None
        self.closed_by = self.closed_at = None


# The actions taken on an issued order and the outcome each one closes it with.
_ORDER_OUTCOMES = {
    "answer_supervision": None, "close_supervision": "closed",
    "escalate_supervision": "escalated", "unflag": "lifted",
}


class _Writer:
    """Inserts chunks of rows on a second thread while the next chunk is generated.

    sqlite3 releases the GIL while SQLite steps through a statement (and its
    triggers), so on two cores generating and inserting overlap. Only this
    thread uses the connection until ``close`` returns.
    """

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.chunks: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._insert, name="demo-writer", daemon=True)
        self.thread.start()

    def put(self, chunk: list[tuple[str, list]]) -> None:
        if self.error is not None:
            raise self.error
        self.chunks.put(chunk)

    def close(self) -> None:
        self.chunks.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _insert(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is not None:
                continue  # drain, so that put() never blocks on a dead writer
            try:
                for sql, rows in chunk:
                    self.db.executemany(sql, rows)
            except BaseException as error:  # handed to the generating thread
                self.error = error


class _Ledger:
    """Generates visits, diary entries and problems in time order and inserts them in chunks."""

    def __init__(self, db, rng: random.Random, world: _World, now_ts: int, total: int,
                 progress: Callable[[str], None] | None):
        self.db = db
        self.rng = rng
        self.world = world
        self.now_ts = now_ts
        self.total = total
        self.progress = progress
        self.clock = _Clock(WorkCalendar.load(db))
        self.response_days = int(settings(db)["response_limit_days"])
        self.extension_leader_days = int(settings(db)["extension_leader_days"])
        # The rules' waiting states shown so far: each is made on purpose until one is.
        self.shown: set[str] = set()
        self.first_day = (now_ts - HISTORY_DAYS * DAY + _LOCAL_OFFSET) // DAY
        self.base_day = self.first_day
        self.produced = 0
        self.flushed_at = 0
        self.counts = {"visits": 0, "diary_entries": 0, "problems": 0, "problem_events": 0}
        self.status_counts = dict.fromkeys(STATUSES, 0)
        self.ledger_seq: dict[int, int] = {}
        # Supervision orders (server/ledger/supervision.py): numbers per year, in the order
        # the orders are generated, so each year counts without gaps.
        self.supervision_seq: dict[int, int] = {}
        self.orders: list[tuple] = []
        self.orders_issued = 0
        self.parts: list[tuple] = []  # joint_parts rows (server/ledger/joint.py)
        self.parts_issued = 0
        # Problems waiting for their turn to be numbered: (time, order, history).
        self.waiting: list[tuple[int, int, _History]] = []
        # Recent accepted problems that later duplicates are merged into, per category
        # and (under None) of any category.
        self.originals: dict[int | None, list[_History]] = {}
        self.visits: list[tuple] = []
        self.diaries: list[tuple] = []
        self.problems: list[list] = []
        self.events: list[tuple] = []
        self._precompute_weights()

    def _precompute_weights(self) -> None:
        self.officials = self.world.field_officials
        self.official_weights = _cumulative(o.weight for o in self.officials)
        categories = self.world.categories
        self.urban_topics = (categories, _cumulative(c.spec.urban_weight for c in categories))
        self.rural_topics = (categories, _cumulative(c.spec.rural_weight for c in categories))
        self.status_weights = [
            (None if limit is None else limit * DAY, _cumulative(weights))
            for limit, weights in STATUS_WEIGHTS_BY_AGE
        ]
        self.method_weights = _cumulative(VISIT_METHOD_WEIGHTS)
        self.kind_weights = _cumulative(PERSON_KIND_WEIGHTS)
        self.urgency_weights = _cumulative(URGENCY_WEIGHTS)
        self.outcome_weights = _cumulative(OUTCOME_WEIGHTS)

    # -- driving loop --

    def run(self) -> dict[str, int]:
        self.writer = _Writer(self.db)
        try:
            self._generate()
        finally:
            self.writer.close()
        years = sorted(set(self.ledger_seq) | set(self.supervision_seq))
        self.db.executemany(
            "INSERT INTO ledger_counters (year, last_no, supervision_last_no) VALUES (?, ?, ?)",
            [(year, self.ledger_seq.get(year, 0), self.supervision_seq.get(year, 0))
             for year in years],
        )
        return self.counts

    def _generate(self) -> None:
        rng = self.rng
        next_report = PROGRESS_EVERY
        while self.produced < self.total:
            day = self._day_for(self.produced / self.total)
            roll = rng.random()
            if roll < 0.12:
                self._hotline_problem(day)
            elif roll < 0.2:
                self._direct_problem(day)
            else:
                self._visit(day)
            if self.produced - self.flushed_at >= CHUNK_PROBLEMS:
                self._flush()
            if self.progress and self.produced >= next_report:
                self.progress(f"{self.produced:,} / {self.total:,} problems")
                next_report += PROGRESS_EVERY
        self._flush(final=True)

    def _flush(self, final: bool = False) -> None:
        self._number_waiting(final)
        self.flushed_at = self.produced
        chunk = [
            (_VISIT_SQL, self.visits), (_DIARY_SQL, self.diaries),
            (_PROBLEM_SQL, self.problems), (_EVENT_SQL, self.events),
        ]
        for table, (_, rows) in zip(self.counts, chunk, strict=True):
            self.counts[table] += len(rows)
        chunk.append((_ORDER_SQL, self.orders))
        chunk.append((_PART_SQL, self.parts))
        self.writer.put(chunk)
        self.visits, self.diaries, self.problems, self.events = [], [], [], []
        self.orders, self.parts = [], []

    def _number_waiting(self, final: bool) -> None:
        """Number accepted problems in order of acceptance, once no later one can precede them.

        Problems are generated day by day, but one found later may be accepted
        before one found earlier. Anything still to come is found at most a few
        days before the current day (``_day_for`` moves weekend work back to
        Friday), so acceptances before that horizon are final. Merges wait in
        the same queue, so that they can name their original's number.
        """
        if final:
            ready, self.waiting = self.waiting, []
        else:
            horizon = (self.base_day - 3) * DAY - _LOCAL_OFFSET
            ready = [entry for entry in self.waiting if entry[0] < horizon]
            self.waiting = [entry for entry in self.waiting if entry[0] >= horizon]
        ready.sort(key=lambda entry: (entry[0], entry[1]))
        for _, _, history in ready:
            if history.fields["accepted_at"] is not None:
                history.ledger_no = self._next_ledger_no(history.fields["accepted_at"])
            self._emit(history)

    def _emit(self, history: _History) -> None:
        self.problems.append(history.row())
        history.emit(self.events)
        self.orders.extend(history.order_rows())
        self.parts.extend(history.part_rows())
        if history.merge_original is not None:
            self.events.append(history.merged_in_event())

    def _day_for(self, fraction: float) -> int:
        """A local day index, moving through the year as problems are produced."""
        day = self.base_day = self.first_day + int(fraction * HISTORY_DAYS)
        weekday = (day + 3) % 7
        if weekday >= 5 and self.rng.random() < 0.7:
            day -= weekday - 4  # most field work happens on working days
        return day

    def _local_ts(self, day: int, earliest_minute: int, latest_minute: int) -> int:
        minute = self.rng.randint(earliest_minute, latest_minute)
        return day * DAY - _LOCAL_OFFSET + minute * 60 + self.rng.randrange(60)

    # -- visits and diary entries --

    def _visit(self, day: int) -> None:
        rng = self.rng
        official = self.officials[_pick(rng, self.official_weights)]
        area = rng.choice(official.visit_areas)
        method = VISIT_METHODS[_pick(rng, self.method_weights)]
        shortest, longest = VISIT_DURATIONS[method]
        duration = rng.randint(shortest, longest) * 60
        started = self._local_ts(day, 8 * 60 + 30, 16 * 60)
        started = min(started, self.now_ts - duration - 2 * HOUR)
        ended = started + duration
        synced = min(ended + rng.randint(120, 6 * HOUR), self.now_ts - 1)
        visit_id = _uuid4(rng)
        self.visits.append((
            visit_id, official.user_id, area.id, self._visit_place(area, method), method,
            rng.choice(CHECKLISTS[method]), self._companions(), self.clock.iso(started),
            self.clock.iso(ended), _jitter(rng, area.lat, 0.001), _jitter(rng, area.lng, 0.001),
            float(rng.randint(5, 50)), self.clock.iso(synced), self.clock.iso(synced),
        ))
        problem_count = min(_problems_per_visit(rng), self.total - self.produced)
        topics = [self._topic(area.urban) for _ in range(problem_count)]
        sources = [
            _Source("visit", official.user_id, rng.choice(area.problem_areas),
                    started + rng.randint(600, duration), visit_id)
            for _ in range(problem_count)
        ]
        for index in range(rng.choice((1, 1, 2, 2, 2, 3, 3))):
            if index < problem_count and rng.random() < 0.7:
                self._diary(official.user_id, visit_id, started, duration, sources[index],
                            topics[index])
            else:
                self._diary(official.user_id, visit_id, started, duration, None, None,
                            rng.choice(area.problem_areas))
        for source, topic in zip(sources, topics, strict=True):
            self._problem(source, topic)

    def _visit_place(self, area: _Area, method: str) -> str:
        rng = self.rng
        village = area.ancestor(4) if area.level >= 4 else None
        if method == "jiefang":
            return f"{area.ancestor(3).name}便民服务中心"
        if method == "dundian" and village:
            return f"{village.name}{'居委会' if area.urban else '村委会'}"
        if village is None:
            return rng.choice(("便民服务中心", "农贸市场", "中心小学", "卫生院", "敬老院"))
        return village.name + self._landmark(area.urban)

    def _companions(self) -> str:
        rng = self.rng
        count = rng.choice((0, 0, 1, 1, 2))
        if not count:
            return ""
        names = "、".join(_person_name(rng) for _ in range(count))
        return f"{rng.choice(COMPANION_ORGS)} {names}"

    def _landmark(self, urban: bool) -> str:
        rng = self.rng
        template = rng.choice(URBAN_PLACES if urban else RURAL_PLACES)
        if "{" not in template:
            return template
        return template.format(
            n=rng.randint(1, 28), u=rng.randint(1, 4), road=rng.choice(ROADS),
            surname=rng.choice(SURNAMES),
        )

    def _topic(self, urban: bool) -> _Topic:
        rng = self.rng
        categories, weights = self.urban_topics if urban else self.rural_topics
        category = categories[_pick(rng, weights)]
        return _Topic(category, rng.choice(category.spec.issues), rng.choice(category.spec.effects))

    def _diary(self, author_id: int, visit_id: str, started: int, duration: int,
               source: _Source | None, topic: _Topic | None, area: _Area | None = None) -> None:
        rng = self.rng
        kind = PERSON_KINDS[_pick(rng, self.kind_weights)]
        area = source.area if source else area
        name = self._person_label(kind)
        phone = _mobile(rng) if rng.random() < 0.4 else ""
        if topic:
            lead = rng.choice(DIARY_LEADS[kind])
            content = f"{lead}{topic.issue}，{topic.effect}。{rng.choice(WISHES)}"
        else:
            content = rng.choice(REMARKS) + "。"
        recorded = started + rng.randint(300, duration)
        saved = self.clock.iso(min(started + duration + rng.randint(120, 3 * HOUR),
                                   self.now_ts - 1))
        diary_id = _uuid4(rng)
        self.diaries.append((
            diary_id, visit_id, author_id, area.id, name, kind, phone, self._address(kind, area),
            content, self.clock.iso(recorded), saved, saved,
        ))
        if source:
            source.diary_id = diary_id
            source.resident_name, source.resident_phone = name, phone

    def _person_label(self, kind: str) -> str:
        rng = self.rng
        roll = rng.random()
        if kind == "resident" and roll < 0.3:
            return rng.choice(SURNAMES) + rng.choice(ADDRESS_FORMS)
        if kind in ("resident", "other") and roll > 0.9:
            return ""
        return _person_name(rng)

    def _address(self, kind: str, area: _Area) -> str:
        rng = self.rng
        village = area.ancestor(4).name
        if kind == "business":
            return f"{rng.choice(ROADS)}{rng.randint(1, 300)}号{rng.choice(SHOPS)}"
        if kind == "cadre":
            return village + ("居委会" if area.urban else "村委会")
        if area.urban:
            building, entrance = rng.randint(1, 28), rng.randint(1, 4)
            flat = rng.randint(1, 6) * 100 + rng.randint(1, 4)
            return f"{village}{building}号楼{entrance}单元{flat}"
        return f"{village}{rng.randint(1, 9)}组"

    # -- problems --

    def _hotline_problem(self, day: int) -> None:
        """A 12345 hotline call, registered by the ledger office."""
        rng = self.rng
        area = rng.choice(self.world.areas[0].problem_areas)
        reporter = rng.choice(self.world.offices_of_district[area.ancestor(2).id])
        found = min(self._local_ts(day, 8 * 60, 18 * 60), self.now_ts - 2 * HOUR)
        source = _Source("hotline", reporter, area, found, resident_name=_person_name(rng),
                         resident_phone=_mobile(rng))
        self._problem(source, self._topic(area.urban))

    def _direct_problem(self, day: int) -> None:
        """A field official's report outside any recorded visit (干部直报)."""
        rng = self.rng
        official = self.officials[_pick(rng, self.official_weights)]
        area = rng.choice(rng.choice(official.visit_areas).problem_areas)
        found = min(self._local_ts(day, 7 * 60, 20 * 60), self.now_ts - 2 * HOUR)
        self._problem(_Source("field", official.user_id, area, found), self._topic(area.urban))

    def _problem(self, source: _Source, topic: _Topic) -> None:
        rng = self.rng
        problem_id = _uuid4(rng)
        status = self._status_for(source.found_ts)
        category = topic.category
        original = self._original_for(category, source.found_ts) if status == "merged" else None
        if status == "merged" and original is None:
            status = "rejected"
        on_spot = (status in ("callback", "closed") and source.kind != "hotline"
                   and rng.random() < 0.15)
        history = _History(self, problem_id, source, category, self._lead_unit(category, source))
        history.describe(self._description(source, topic))
        history.build(status, on_spot, original)
        self.status_counts[status] += 1
        self.produced += 1
        if history.fields["accepted_at"] is not None:
            for key in (category.id, None):
                recent = self.originals.setdefault(key, [])
                recent.append(history)
                del recent[:-8]
        if history.fields["accepted_at"] is not None:
            self.waiting.append((history.fields["accepted_at"], self.produced, history))
        elif original is not None:
            self.waiting.append((history.steps[-1].at, self.produced, history))
        else:
            self._emit(history)

    def _description(self, source: _Source, topic: _Topic) -> tuple:
        """(place, description, resident name, resident phone, urgency, suggested unit)."""
        rng = self.rng
        area = source.area
        village = area.ancestor(4).name
        tail = rng.choice(DESCRIPTION_TAILS)
        if "{" in tail:
            tail = tail.format(n=rng.randint(2, 60))
        spec = topic.category.spec
        if spec.located:
            place = self._landmark(area.urban)
            description = f"{village}{place}{topic.issue}，{topic.effect}。{tail}"
        else:
            place = ""
            description = f"{village}群众反映{topic.issue}，{topic.effect}。{tail}"
        if source.kind == "hotline":
            description = f"12345热线转办：{description}"
        # Most residents who raise a problem leave a name and a phone for the callback; the
        # rest (anonymous, or no phone given) are closed as 无回访对象.
        with_resident = source.kind == "hotline" or rng.random() < 0.9
        name = (source.resident_name or _person_name(rng)) if with_resident else ""
        phone = source.resident_phone or (_mobile(rng) if rng.random() < 0.9 else "")
        return (
            place, description, name, phone if with_resident else "",
            URGENCIES[_pick(rng, self.urgency_weights)],
            topic.category.unit.id if rng.random() < 0.5 else None,
        )

    def _original_for(self, category: _Category, found_ts: int) -> _History | None:
        """A recent accepted problem found before this one, of the same category if possible."""
        for key in (category.id, None):
            for candidate in reversed(self.originals.get(key, ())):
                if candidate.source.found_ts < found_ts:
                    return candidate
        return None

    def _status_for(self, found_ts: int) -> str:
        remaining = self.total - self.produced
        if remaining <= len(STATUSES):
            # The last few problems make sure every status appears.
            missing = [status for status, count in self.status_counts.items() if not count]
            if missing and remaining <= len(missing):
                return missing[0]
        age = self.now_ts - found_ts
        for limit, weights in self.status_weights:
            if limit is None or age < limit:
                return STATUSES[_pick(self.rng, weights)]
        raise AssertionError("unreachable")

    def _lead_unit(self, category: _Category, source: _Source) -> _Unit:
        roll = self.rng.random()
        governments = self.world.government_of_area
        township, district = source.area.ancestor(3), source.area.ancestor(2)
        if roll < 0.08 and township.id in governments:
            return governments[township.id]
        if roll < 0.2:
            return governments[district.id]
        return category.unit

    def _next_ledger_no(self, accepted_ts: int) -> str:
        year = int(self.clock.day_text(self.clock.local_day(accepted_ts))[:4])
        number = self.ledger_seq[year] = self.ledger_seq.get(year, 0) + 1
        return f"{LEDGER_PREFIX}-{year}-{number:06d}"


class _History:
    """One problem: its event history, built like ``server.ledger.workflow`` applies actions."""

    def __init__(self, ledger: _Ledger, problem_id: str, source: _Source, category: _Category,
                 lead_unit: _Unit):
        self.ledger = ledger
        self.rng = ledger.rng
        self.problem_id = problem_id
        self.source = source
        self.category = category
        self.lead_unit = lead_unit
        offices = ledger.world.offices_of_district[source.area.ancestor(2).id]
        leaders = ledger.world.leaders_of_district[source.area.ancestor(2).id]
        self.office = self.rng.choice(offices)
        self.leader = self.rng.choice(leaders)
        self.steps: list[_Step] = []
        self.sync_delay = self.rng.randint(300, 3 * HOUR)
        self.created_at = source.found_ts
        self.merge_original: _History | None = None
        self.ledger_no: str | None = None
        self.fields: dict = {}
        self.details: tuple = ()
        self.status = "submitted"
        self.solved_on_spot = False
        self.orders: list[_Order] = []
        # Joint handling draws from its own generator (see the module's docstring).
        self.joint_rng = random.Random(problem_id)
        self.helpers: dict[int, str] = {}  # the current helper units' part states
        self.lead_released = False
        self.parts: list[dict] = []

    def add(self, kind: str, actor: int | None, to_status: str | None, note: str = "",
            args=None, delay: tuple[int, int] = (HOUR, DAY)) -> _Step:
        low, high = delay
        rng = self.joint_rng if kind in JOINT_KINDS else self.rng
        seconds = low + int(rng.random() * (high - low))
        step = _Step(kind, actor, to_status, note, args, seconds)
        self.steps.append(step)
        return step

    def build(self, status: str, on_spot: bool, original: _History | None) -> None:
        self.status = status
        self.add("reported", self.source.reporter_id, "submitted", delay=(0, 0))
        if on_spot:
            self._solve_on_spot()
        elif status != "submitted":
            self._intake(original)
        self._place_in_time()
        self._supervise()
        self._revisit()
        self._replay()
        if "awaiting_leader" in (self.fields["extension_request"] or ""):
            self.ledger.shown.add("awaiting_leader")
        if self.fields["redo_pending"]:
            self.ledger.shown.add("redo_pending")

    # -- the workflow, stopping at the target status --

    def _solve_on_spot(self) -> None:
        # As the phone reports it: solved at the find, awaiting the office's callback.
        self.add("solved_on_spot", self.source.reporter_id, "callback",
                 self.rng.choice(SOLVED_ON_SPOT_NOTES), delay=(0, 0))
        self.solved_on_spot = True
        if self.status == "closed":
            self._close_by_callback()

    def _intake(self, original: _History | None) -> None:
        rng = self.rng
        if self.status == "rejected":
            code, note = rng.choice(REJECT_NOTES)
            self.add("reject", self.office, "rejected", note, code)
            return
        if self.status == "merged":
            self.merge_original = original
            self.add("merge", self.office, "merged", MERGE_NOTE, original)
            return
        self.add("accept", self.office, "accepted", rng.choice(ACCEPT_NOTES),
                 delay=(HOUR, 36 * HOUR))
        if self.status != "accepted":
            self._handle()

    def _handle(self) -> None:
        rng = self.rng
        misrouted = self.status == "returned" or rng.random() < 0.05
        first_unit = self._wrong_unit() if misrouted else self.lead_unit
        self._dispatch(first_unit, misrouted=misrouted)
        if misrouted:
            if self.status == "returned" and rng.random() < 0.5:
                self._sign(first_unit)
            self.add("return", self._handler(first_unit), "returned",
                     RETURN_NOTE.format(unit=self.lead_unit.name), RETURN_REASON,
                     delay=(2 * HOUR, 3 * DAY))
            if self.status == "returned":
                self.lead_unit = first_unit
                return
            # The office finds the return justified: the right unit, on new clocks.
            self.add("accept_return", self.office, "accepted", ACCEPT_RETURN_NOTE,
                     delay=(HOUR, DAY))
            self._dispatch(self.lead_unit)
        elif self.status != "dispatched" and rng.random() < 0.04:
            # The right unit returns it anyway; the office sends it back (不当退单).
            self._sign(self.lead_unit)
            self.add("return", self._handler(self.lead_unit), "returned",
                     RETURN_NOTE.format(unit=self._wrong_unit().name), RETURN_REASON,
                     delay=(2 * HOUR, DAY))
            self.add("refuse_return", self.office, "dispatched", REFUSE_RETURN_NOTE,
                     delay=(HOUR, DAY))
        if self.status == "dispatched":
            self._helpers_sign(0.5)
            return
        self._sign(self.lead_unit)
        self._progress()
        self._helpers_sign(0.9)
        if self.status == "handling":
            self._helpers_answer(0.5)
        if rng.random() < 0.06:
            self._extension()
        elif self.status == "handling" and "awaiting_leader" not in self.ledger.shown:
            self._extension(waiting_for_leader=True)
        if self.status == "handling":
            # Some are back with the unit because the resident said it was not solved.
            if rng.random() < 0.4 and self.has_contact:
                self._reply()
                self._verify()
                self._reopen_by_callback()
                self._progress()
            return
        outcome = self._reply()
        if self.status == "replied":
            return
        self._verify()
        if self.status == "callback":
            roll = rng.random()
            if not self.has_contact:
                pass
            elif 0.3 <= roll < 0.45 or "redo_pending" not in self.ledger.shown:
                self._solved_unsatisfied()  # waiting for the office's decision
            elif roll < 0.3:
                self._unreached()
            return
        # Units claim more than residents confirm: a callback sends some replies back.
        if self.has_contact and (
                (outcome != "solved" and rng.random() < 0.6) or rng.random() < 0.04):
            self._reopen_by_callback()
            self._progress()
            self._reply("solved")
            self._verify()
        self._close_by_callback()

    def _wrong_unit(self) -> _Unit:
        units = self.ledger.world.units
        unit = self.rng.choice(units)
        return unit if unit is not self.lead_unit else units[(units.index(unit) + 1) % len(units)]

    def _handler(self, unit: _Unit) -> int:
        return self.ledger.world.handler_of_unit[unit.id]

    def _dispatch(self, unit: _Unit, misrouted: bool = False) -> None:
        units = self.ledger.world.units
        helpers = []
        if self.rng.random() < 0.08:
            helper = self.rng.choice(units)
            helpers = [] if helper is unit else [helper.id]
        if misrouted and not helpers and self.joint_rng.random() < 0.5:
            # A helper named on a dispatch that goes wrong: the re-dispatch removes its part.
            helper = self.joint_rng.choice(units)
            helpers = [] if helper is unit else [helper.id]
        self.add("dispatch", self.office, "dispatched", f"交由{unit.name}办理", (unit, helpers),
                 delay=(1800, DAY))
        self.helpers = {helper: self.helpers.get(helper, "dispatched") for helper in helpers}
        self.lead_released = False

    # -- joint handling (server/ledger/joint.py) --

    def _helpers_sign(self, chance: float) -> None:
        for unit_id, state in self.helpers.items():
            if state == "dispatched" and self.joint_rng.random() < chance:
                self.helpers[unit_id] = "signed"
                self.add("sign_part", self._handler_of(unit_id), None, JOINT_SIGN_NOTE,
                         unit_id, delay=(HOUR, DAY))

    def _helpers_answer(self, chance: float) -> None:
        for unit_id, state in self.helpers.items():
            if state == "signed" and self.joint_rng.random() < chance:
                self.helpers[unit_id] = "answered"
                self.add("answer_part", self._handler_of(unit_id), None,
                         self.joint_rng.choice(JOINT_OPINIONS), unit_id, delay=(HOUR, 2 * DAY))

    def _before_reply(self) -> None:
        """The lead replies once every helper has answered, or the office lets it go ahead."""
        if self.lead_released or all(s == "answered" for s in self.helpers.values()):
            return
        if self.joint_rng.random() < 0.8:
            self._helpers_sign(1.0)
            self._helpers_answer(1.0)
        else:
            self.lead_released = True
            self.add("let_lead_reply", self.office, None, LET_LEAD_REPLY_NOTE,
                     [u for u, s in self.helpers.items() if s != "answered"], delay=(HOUR, DAY))

    def _handler_of(self, unit_id: int) -> int:
        return self.ledger.world.handler_of_unit[unit_id]

    def _sign(self, unit: _Unit) -> None:
        contacted = self.rng.random() < 0.85
        note = "已签收，已电话联系反映人" if contacted else "已签收，正在安排办理"
        self.add("sign", self._handler(unit), "handling", note, contacted,
                 delay=(1200, 30 * HOUR))

    def _progress(self) -> None:
        for _ in range(self.rng.choice((0, 0, 0, 1, 1, 2))):
            self.add("progress", self._handler(self.lead_unit), None,
                     self.rng.choice(PROGRESS_NOTES), delay=(DAY // 2, 2 * DAY))

    def _extension(self, waiting_for_leader: bool = False) -> None:
        rng = self.rng
        extra = rng.choice((3, 5, 5, 10, 15, 15))
        if waiting_for_leader:
            extra = self.ledger.extension_leader_days + 5
        code, note = rng.choice(EXTENSION_NOTES)
        self.add("request_extension", self._handler(self.lead_unit), None, note,
                 (extra, code), delay=(HOUR, DAY))
        if waiting_for_leader:
            self.add("approve_extension", self.office, None, APPROVE_NOTE, extra,
                     delay=(2 * HOUR, 2 * DAY))
            return
        if self.status == "handling" and rng.random() < 0.4:
            return  # still waiting for the office's decision
        if rng.random() < 0.8:
            self.add("approve_extension", self.office, None, APPROVE_NOTE, extra,
                     delay=(2 * HOUR, 2 * DAY))
            if extra > self.ledger.extension_leader_days:  # a leader's decision too
                if self.status == "handling" and rng.random() < 0.4:
                    return  # waiting for the leader
                if rng.random() < 0.75:
                    self.add("approve_extension_leader", self.leader, None,
                             LEADER_APPROVE_NOTE, extra, delay=(2 * HOUR, 2 * DAY))
                else:
                    self.add("refuse_extension_leader", self.leader, None,
                             LEADER_REFUSE_NOTE, delay=(2 * HOUR, 2 * DAY))
        else:
            self.add("refuse_extension", self.office, None, REFUSE_NOTE,
                     delay=(2 * HOUR, 2 * DAY))

    def _reply(self, outcome: str | None = None) -> str:
        rng = self.rng
        outcome = outcome or OUTCOMES[_pick(rng, self.ledger.outcome_weights)]
        fix = rng.choice(self.category.spec.fixes)
        note = REPLY_NOTES[outcome].format(fix=fix)
        self._before_reply()
        calendar_days = self.category.spec.time_limit_days * 1.4
        low, high = (1.0, 1.8) if rng.random() < 0.08 else (0.1, 0.55)
        self.add("reply", self._handler(self.lead_unit), "replied", note, outcome,
                 delay=(int(low * calendar_days * DAY), int(high * calendar_days * DAY)))
        if rng.random() < 0.05:
            self.add("send_back", self.office, "handling", SEND_BACK_NOTE, delay=(HOUR, DAY))
            self.add("reply", self._handler(self.lead_unit), "replied",
                     f"已补充整改材料。{note}", outcome, delay=(HOUR, 2 * DAY))
        return outcome

    def _verify(self) -> None:
        self.add("verify", self.office, "callback", VERIFY_NOTE, delay=(HOUR, DAY))

    def _unreached(self) -> None:
        self.add("callback", self.office, None, UNREACHED_NOTE, (False, None, None),
                 delay=(2 * HOUR, DAY))

    def _reopen_by_callback(self) -> None:
        satisfaction = "unsatisfied" if self.rng.random() < 0.7 else "basically"
        self.add("callback", self.office, "handling", REOPEN_NOTE, (True, False, satisfaction),
                 delay=(2 * HOUR, 2 * DAY))

    @property
    def has_contact(self) -> bool:
        """Whether the resident left a phone (server.ledger.closures.has_contact): without one there
        is nobody to call back, and the office closes as 无回访对象."""
        return bool(self.details[3])

    def _close_by_callback(self) -> None:
        rng = self.rng
        if not self.has_contact:
            self.add("close_no_contact", self.office, "closed", NO_CONTACT_NOTE,
                     delay=(2 * HOUR, 2 * DAY))
            return
        if rng.random() < 0.12:
            self._unreached()
        roll = rng.random()
        shown = self.ledger.shown
        if (roll >= 0.98 or not {"redo", "explained"} <= shown) and not self.solved_on_spot:
            # Solved but 不满意: the office decides.
            self._solved_unsatisfied()
            explain = rng.random() < 0.5
            if "redo" not in shown or "explained" not in shown:
                explain = "redo" in shown
            if explain:
                shown.add("explained")
                self.add("close_explained", self.office, "closed", EXPLAIN_NOTE,
                         delay=(HOUR, 2 * DAY))
                return
            shown.add("redo")
            self.add("redo", self.office, "handling", REDO_NOTE, delay=(HOUR, 2 * DAY))
            self._progress()
            self._reply("solved")
            self._verify()
            roll = 0.0
        satisfaction = "satisfied" if roll < 0.86 else "basically"
        self.add("callback", self.office, "closed", CALLBACK_NOTES[satisfaction],
                 (True, True, satisfaction), delay=(2 * HOUR, 2 * DAY))

    def _solved_unsatisfied(self) -> None:
        self.add("callback", self.office, None, CALLBACK_NOTES["unsatisfied"],
                 (True, True, "unsatisfied"), delay=(2 * HOUR, 2 * DAY))

    # -- placing the steps in time --

    def _place_in_time(self) -> None:
        """Lay the steps out after the find, squeezing them if they would pass ``now``.

        The office sees a report only once the phone has synced it, so the first
        step the office takes waits for that too.
        """
        steps = self.steps
        for step in steps[1:]:
            if step.delay:
                step.delay += self.sync_delay
                break
        available = self.ledger.now_ts - 60 - self.source.found_ts
        total = sum(step.delay for step in steps) or 1
        scale = min(1.0, available / (total + self.sync_delay))
        at = self.source.found_ts
        for step in steps:
            if step.delay:
                at += max(1, int(step.delay * scale))
            step.at = at
        self.created_at = self.source.found_ts + int(self.sync_delay * scale)

    def _insert(self, step: _Step, at: int) -> None:
        step.at = at
        index = next((i for i, s in enumerate(self.steps) if s.at > at), len(self.steps))
        self.steps.insert(index, step)

    def _supervise(self) -> None:
        """Remind, supervise or flag the unit between the first dispatch and the reply."""
        dispatches = [step for step in self.steps if step.kind == "dispatch"]
        if not dispatches:
            return
        rng = self.rng
        clock = self.ledger.clock
        start = dispatches[0].at
        limit = self.category.spec.time_limit_days
        deadline_day = clock.add_working_days(clock.local_day(start), limit)
        deadline_end = (deadline_day + 1) * DAY - _LOCAL_OFFSET
        end = self.ledger.now_ts - 60
        for step in self.steps:
            if step.at > start and step.kind in ("reply", "return"):
                end = step.at
                break
        roll = rng.random()
        if end > deadline_end:
            kind = "supervise" if roll < 0.45 else "flag" if roll < 0.55 else None
            at = deadline_end + rng.randint(HOUR, 2 * DAY)
        else:
            kind = "remind" if roll < 0.08 else None
            at = deadline_end - rng.randint(2 * DAY, 4 * DAY)
        if kind is None:
            return
        if not start < at < end:
            at = (start + end) // 2
        if kind == "remind":
            self._insert(_Step(kind, self.office, None, SUPERVISION_NOTES[kind], None, 0), at)
            return
        unit = next(step.args[0] for step in reversed(self.steps)
                    if step.kind == "dispatch" and step.at < at)
        order = _Order(kind, unit)
        if kind == "flag":
            self._insert(_Step(kind, self.leader, None, SUPERVISION_NOTES[kind], order, 0), at)
            self._lift(order)
        else:
            answer_day = clock.add_working_days(clock.local_day(at), rng.randint(3, 5))
            order.answer_by = clock.day_text(answer_day)
            self._insert(_Step(kind, self.office, None, SUPERVISION_NOTES[kind], order, 0), at)
            self._follow_order(order, at, end, (answer_day + 1) * DAY - _LOCAL_OFFSET)

    def _follow_order(self, order: _Order, issued: int, end: int, answer_by_end: int) -> None:
        """The unit answers most orders (before its reply); the office strikes off most answered
        ones and escalates a few, answered or left unanswered past their date."""
        rng, now = self.rng, self.ledger.now_ts - 60
        answered = None
        if rng.random() < 0.7:
            answered = issued + rng.randint(2 * HOUR, max(3 * HOUR, answer_by_end - issued))
            answered = min(answered, end - 2 * HOUR)
            if answered <= issued:
                answered = None
        if answered is not None:
            self._insert(_Step("answer_supervision", self._handler(order.unit), None,
                               rng.choice(SUPERVISION_ANSWER_NOTES), order, 0), answered)
            roll = rng.random()
            if roll < 0.1 or "escalated" not in self.ledger.shown:
                # escalated while the problem is still open
                at = answered + rng.randint(HOUR, DAY)
                if at < end:
                    self._insert(_Step("escalate_supervision", self.office, None,
                                       SUPERVISION_ESCALATE_NOTE, order, 0), at)
                    self.ledger.shown.add("escalated")
            elif roll < 0.7:
                at = answered + rng.randint(2 * HOUR, 3 * DAY)
                if at < now:
                    self._insert(_Step("close_supervision", self.office, None,
                                       SUPERVISION_CLOSE_NOTE, order, 0), at)
        elif rng.random() < 0.3:  # unanswered past its date: escalated
            at = answer_by_end + rng.randint(HOUR, 2 * DAY)
            if at < end:
                self._insert(_Step("escalate_supervision", self.office, None,
                                   SUPERVISION_ESCALATE_NOTE, order, 0), at)

    def _lift(self, order: _Order) -> None:
        """A leader lifts about half of the flags on problems that got closed (摘牌)."""
        closing = self.steps[-1]
        if closing.to_status != "closed" or (
                self.rng.random() < 0.5 and "lifted" in self.ledger.shown):
            return
        at = closing.at + self.rng.randint(HOUR, 5 * DAY)
        if at < self.ledger.now_ts - 60:
            self._insert(_Step("unflag", self.leader, None, SUPERVISION_UNFLAG_NOTE, order, 0), at)
            self.ledger.shown.add("lifted")

    def _revisit(self) -> None:
        """回头看: about a third of closed problems get a return visit once it is due."""
        last = next(step for step in reversed(self.steps) if step.to_status)
        if last.kind == "close_explained":
            return  # nothing was fixed that a 回头看 could check
        if last.to_status != "closed" or self.rng.random() < 0.65:
            return
        clock = self.ledger.clock
        due_day = clock.local_day(last.at) + self.category.return_visit_days
        at = self.ledger._local_ts(due_day + self.rng.randint(0, 10), 8 * 60 + 30, 17 * 60)
        if at < self.ledger.now_ts - 60:
            actor = self.rng.choice((self.office, self.source.reporter_id))
            self._insert(_Step("return_visit", actor, None, self.rng.choice(RETURN_VISIT_NOTES),
                               True, 0), at)

    # -- the problem's columns and each event's data, as the workflow writes them --

    def _replay(self) -> None:
        """Walk the events as ``server.ledger.workflow.apply`` would, filling columns and
        event data.

        Each event's data carries ``overdue``: the problem was open and past its
        deadline (Asia/Shanghai day) just before the event.
        """
        clock = self.ledger.clock
        limit = self.category.spec.time_limit_days
        fields = dict.fromkeys(WORKFLOW_COLUMNS)
        fields.update(helper_unit_ids="[]", redo_count=0, supervision="none", supervision_note="",
                      extension_count=0, unjustified_returns=0, redo_pending=0)
        status = None
        deadline_day = None
        pending_decision = False
        current_parts: dict[int, dict] = {}  # the helpers' parts not removed, by unit
        restart = False  # the next dispatch starts new clocks (after a justified return)
        kept = []
        for step in self.steps:
            day = clock.local_day(step.at)
            overdue = deadline_day is not None and status not in FINISHED and day > deadline_day
            flag = "true" if overdue else "false"
            kind, args = step.kind, step.args
            data = "{}"
            if kind == "solved_on_spot":
                fields["accepted_at"] = self.created_at
                fields["closed_on_time"] = 1
            elif kind == "accept":
                fields["accepted_at"] = step.at
                data = f'{{"ledger_no": {_LEDGER_NO}, "overdue": {flag}}}'
            elif kind == "reject":
                fields["closed_at"] = step.at
                fields["reject_reason_code"] = args
                data = f'{{"overdue": {flag}, "reason_code": "{args}"}}'
            elif kind == "merge":
                fields["merged_into"] = args.problem_id
                fields["closed_at"] = step.at
                data = (f'{{"original_id": "{args.problem_id}", "original_no": {_ORIGINAL_NO},'
                        f' "overdue": {flag}}}')
            elif kind == "dispatch":
                unit, helpers = args
                helper_ids = "[" + ", ".join(str(helper) for helper in helpers) + "]"
                fields["lead_unit_id"], fields["helper_unit_ids"] = unit.id, helper_ids
                added, removed = self._dispatch_parts(current_parts, helpers, step)
                joint = f'"helpers_added": {added}, "helpers_removed": {removed}, '
                fields["unit_dispatched_at"] = step.at
                if fields["dispatched_at"] is None or restart:
                    deadline_day = clock.add_working_days(day, limit)
                    deadline = clock.day_text(deadline_day)
                    fields.update(dispatched_at=fields["dispatched_at"] or step.at,
                                  deadline=deadline, original_deadline=deadline)
                    restarts = ' "restarts": true,' if restart else ""
                    restart = False
                    data = (f'{{"deadline": "{deadline}", "helper_unit_ids": {helper_ids},'
                            f' {joint}"lead_unit_id": {unit.id}, "overdue": {flag},'
                            f'{restarts} "time_limit_days": {limit}}}')
                else:
                    data = (f'{{"helper_unit_ids": {helper_ids}, {joint}"lead_unit_id":'
                            f' {unit.id}, "overdue": {flag}}}')
            elif kind in ("sign_part", "answer_part"):
                part = current_parts[args]
                if kind == "sign_part":
                    part.update(state="signed", signed_at=step.at, signed_by=step.actor)
                else:
                    part.update(state="answered", answered_at=step.at, answered_by=step.actor,
                                opinion=step.note, answer_step=step)
                data = f'{{"overdue": {flag}, "part_id": {part["id"]}, "unit_id": {args}}}'
            elif kind == "let_lead_reply":
                awaited = "[" + ", ".join(str(unit_id) for unit_id in args) + "]"
                data = (f'{{"awaited_unit_ids": {awaited}, "overdue": {flag},'
                        f' "unit_id": {fields["lead_unit_id"]}}}')
            elif kind == "sign":
                fields["signed_at"] = fields["signed_at"] or step.at
                fields["resident_contacted"] = int(args)
                # As server.ledger.deadlines.responded_in_time freezes it at signing.
                fields["responded_in_time"] = int(bool(args) and clock.local_day(
                    fields["signed_at"]) <= clock.add_working_days(
                    clock.local_day(fields["unit_dispatched_at"]), self.ledger.response_days))
                data = f'{{"contacted": {"true" if args else "false"}, "overdue": {flag}}}'
            elif kind == "return":
                fields["signed_at"] = fields["responded_in_time"] = None
                fields["return_reason_code"] = args
                data = (f'{{"overdue": {flag}, "reason_code": "{args}",'
                        f' "unit_id": {fields["lead_unit_id"]}}}')
            elif kind == "accept_return":
                data = (f'{{"justified": true, "overdue": {flag},'
                        f' "unit_id": {fields["lead_unit_id"]}}}')
                fields.update(lead_unit_id=None, unit_dispatched_at=None,
                              signed_at=None, responded_in_time=None, extension_request=None)
                restart = True
            elif kind == "refuse_return":
                fields["unjustified_returns"] += 1
                data = (f'{{"justified": false, "overdue": {flag},'
                        f' "unit_id": {fields["lead_unit_id"]}}}')
            elif kind == "request_extension":
                if overdue:  # too late to ask: the workflow refuses, so it never happened
                    pending_decision = True
                    continue
                at_text = clock.iso(step.at)
                extra, code = args
                fields["extension_request"] = (
                    f'{{"extra_days": {extra}, "reason": "{step.note}", "at": "{at_text}"}}'
                )
                fields["extension_reason_code"] = code
                data = (f'{{"at": "{at_text}", "extra_days": {extra}, "overdue": {flag},'
                        f' "reason": "{step.note}", "reason_code": "{code}"}}')
            elif kind in ("approve_extension", "refuse_extension", "approve_extension_leader",
                          "refuse_extension_leader"):
                if pending_decision:  # the request never happened: nor its decisions
                    continue
                if kind == "approve_extension" and args > self.ledger.extension_leader_days:
                    # The office agrees; a leader decides (server.ledger.rules).
                    request = fields["extension_request"]
                    fields["extension_request"] = (
                        request[:-1] + f', "awaiting_leader": true, "office_approved_by":'
                        f' {step.actor}, "office_approved_at": "{clock.iso(step.at)}"}}')
                    data = (f'{{"awaiting_leader": true, "overdue": {flag},'
                            f' "requested_days": {args}}}')
                elif kind in ("approve_extension", "approve_extension_leader"):
                    fields["extension_request"] = None
                    old = fields["deadline"]
                    deadline_day = clock.add_working_days(deadline_day, args)
                    fields["deadline"] = clock.day_text(deadline_day)
                    fields["extension_count"] += 1
                    data = (f'{{"deadline": "{fields["deadline"]}", "extra_days": {args},'
                            f' "old_deadline": "{old}", "overdue": {flag}}}')
                else:
                    fields["extension_request"] = None
                    data = f'{{"deadline": "{fields["deadline"]}", "overdue": {flag}}}'
            elif kind == "reply":
                fields.update(outcome=args, replied_at=step.at, extension_request=None)
                data = f'{{"outcome": "{args}", "overdue": {flag}}}'
            elif kind == "verify":
                data = f'{{"outcome": "{fields["outcome"]}", "overdue": {flag}}}'
            elif kind == "send_back":
                fields["redo_count"] += 1
                data = f'{{"overdue": {flag}, "redo": {fields["redo_count"]}}}'
            elif kind == "redo":
                fields["redo_count"] += 1
                fields["redo_pending"] = 0
                data = f'{{"overdue": {flag}, "redo": {fields["redo_count"]}}}'
            elif kind == "close_explained":
                on_time = self._close(fields, step, day, deadline_day)
                fields.update(closure_kind="explained", closure_reason=step.note,
                              return_visit_due=None, redo_pending=0, extension_request=None,
                              explained_reason_code=EXPLAIN_REASON)
                data = (f'{{"on_time": {"true" if on_time else "false"}, "overdue": {flag},'
                        f' "reason_code": "{EXPLAIN_REASON}"}}')
            elif kind == "callback":
                data = self._callback(fields, step, day, deadline_day, flag)
            elif kind == "close_no_contact":
                on_time = self._close(fields, step, day, deadline_day)
                fields["closure_kind"] = "no_contact"
                data = f'{{"on_time": {"true" if on_time else "false"}, "overdue": {flag}}}'
            elif kind == "return_visit":
                fields["return_visit_result"] = "held"
                data = f'{{"held": true, "overdue": {flag}}}'
            elif kind in SUPERVISION_LEVELS:
                level = SUPERVISION_LEVELS[kind]
                if SUPERVISION_ORDER.index(level) > SUPERVISION_ORDER.index(fields["supervision"]):
                    fields["supervision"] = level
                fields["supervision_note"] = step.note
                data = f'{{"level": "{level}", "overdue": {flag}}}'
                if args is not None:
                    data = self._issue(args, step, fields["lead_unit_id"], level, flag)
            elif kind in _ORDER_OUTCOMES:
                order = args
                if kind == "answer_supervision":
                    order.answer, order.answered_by, order.answered_at = (
                        step.note, step.actor, step.at)
                    data = (f'{{"number": "{order.number}", "order_id": {order.id},'
                            f' "overdue": {flag}}}')
                else:
                    outcome = _ORDER_OUTCOMES[kind]
                    order.closed_by, order.closed_at, order.outcome = step.actor, step.at, outcome
                    data = (f'{{"number": "{order.number}", "order_id": {order.id},'
                            f' "outcome": "{outcome}", "overdue": {flag}}}')
            step.from_status = status
            step.data = data
            if step.to_status:
                status = step.to_status
            kept.append(step)
        self.steps = kept
        fields["status"] = status
        self.fields = fields

    def _dispatch_parts(self, current: dict[int, dict], helpers: list[int], step: _Step,
                        ) -> tuple[str, str]:
        """The parts a dispatch leaves, as server.ledger.joint.dispatch_parts writes them; the
        units added and removed, as JSON lists."""
        removed = sorted(set(current) - set(helpers))
        added = sorted(set(helpers) - set(current))
        for unit_id in removed:
            current.pop(unit_id).update(state="removed", removed_at=step.at,
                                        removed_by=step.actor)
        for unit_id in added:
            self.ledger.parts_issued += 1
            part = {"id": self.ledger.parts_issued, "unit_id": unit_id, "state": "dispatched",
                    "dispatched_at": step.at, "dispatched_by": step.actor, "signed_at": None,
                    "signed_by": None, "answered_at": None, "answered_by": None,
                    "opinion": None, "answer_step": None, "removed_at": None,
                    "removed_by": None}
            current[unit_id] = part
            self.parts.append(part)
        return (f"[{', '.join(map(str, added))}]", f"[{', '.join(map(str, removed))}]")

    def part_rows(self) -> list[tuple]:
        iso = self.ledger.clock.iso

        def at(value):
            return value and iso(value)

        return [(
            part["id"], self.problem_id, part["unit_id"], part["state"],
            iso(part["dispatched_at"]), part["dispatched_by"], at(part["signed_at"]),
            part["signed_by"], at(part["answered_at"]), part["answered_by"], part["opinion"],
            part["answer_step"] and part["answer_step"].event_id, at(part["removed_at"]),
            part["removed_by"],
        ) for part in self.parts]

    def _issue(self, order: _Order, step: _Step, unit_id: int, level: str, flag: str) -> str:
        """Number the order as server.ledger.numbering.next_number would; its event's data."""
        ledger = self.ledger
        year = int(ledger.clock.day_text(ledger.clock.local_day(step.at))[:4])
        ledger.supervision_seq[year] = ledger.supervision_seq.get(year, 0) + 1
        order.number = f"DB-{year}-{ledger.supervision_seq[year]:04d}"
        order.id = ledger.orders_issued = ledger.orders_issued + 1
        order.requirement, order.issued_by, order.issued_at = step.note, step.actor, step.at
        assert unit_id == order.unit.id
        self.orders.append(order)
        answer_by = f'"answer_by": "{order.answer_by}", ' if order.kind == "supervise" else ""
        return (f'{{{answer_by}"level": "{level}", "number": "{order.number}",'
                f' "order_id": {order.id}, "overdue": {flag}, "unit_id": {unit_id}}}')

    def order_rows(self) -> list[tuple]:
        iso = self.ledger.clock.iso
        return [(
            order.id, self.problem_id, order.number,
            "flag" if order.kind == "flag" else "order", order.requirement, order.answer_by,
            order.issued_by, iso(order.issued_at), order.unit.id, order.answer,
            order.answered_by, order.answered_at and iso(order.answered_at), order.closed_by,
            order.closed_at and iso(order.closed_at), order.outcome,
        ) for order in self.orders]

    def _callback(self, fields: dict, step: _Step, day: int, deadline_day: int | None,
                  flag: str) -> str:
        reached, solved, satisfaction = step.args
        if not reached:
            fields["callback_reached"] = 0
            return (f'{{"method": "phone", "overdue": {flag}, "reached": false,'
                    ' "result": "no_answer"}')
        fields.update(callback_reached=1, callback_solved=int(solved), satisfaction=satisfaction)
        if solved and step.to_status is None:  # solved but 不满意: the office decides
            fields["redo_pending"] = 1
            return (f'{{"method": "phone", "overdue": {flag}, "reached": true,'
                    ' "redo_pending": true, "result": "reached",'
                    f' "satisfaction": "{satisfaction}", "solved": true}}')
        if not solved:
            return (f'{{"method": "phone", "overdue": {flag}, "reached": true,'
                    f' "result": "reached", "satisfaction": "{satisfaction}", "solved": false}}')
        on_time = self._close(fields, step, day, deadline_day)
        return (f'{{"method": "phone", "on_time": {"true" if on_time else "false"},'
                f' "overdue": {flag}, "reached": true, "result": "reached",'
                f' "satisfaction": "{satisfaction}", "solved": true}}')

    def _close(self, fields: dict, step: _Step, day: int, deadline_day: int | None) -> bool:
        """The columns a closing sets (server.ledger.closures.closing); whether it was on time."""
        on_time = deadline_day is None or day <= deadline_day
        fields.update(
            closed_at=step.at,
            closed_on_time=int(on_time),
            return_visit_due=self.ledger.clock.day_text(day + self.category.return_visit_days),
        )
        return on_time

    # -- output --

    def describe(self, details: tuple) -> None:
        self.details = details

    def row(self) -> list:
        source, fields, iso = self.source, self.fields, self.ledger.clock.iso
        area = source.area
        place, description, resident_name, resident_phone, urgency, suggested = self.details
        updated = max(self.created_at, self.steps[-1].at)  # steps are in time order
        row = [
            self.problem_id, self.ledger_no, source.reporter_id, source.visit_id, source.diary_id,
            area.id, place, _jitter(self.rng, area.lat, 0.002), _jitter(self.rng, area.lng, 0.002),
            self.category.id, urgency, description, resident_name, resident_phone, suggested,
            source.kind, int(self.solved_on_spot), iso(source.found_ts), iso(self.created_at),
            iso(updated),
        ]
        for column in WORKFLOW_COLUMNS:
            value = fields[column]
            row.append(iso(value) if column in _TIMESTAMP_COLUMNS and value is not None else value)
        return row

    def emit(self, events: list[tuple]) -> None:
        rng, iso, problem_id = self.rng, self.ledger.clock.iso, self.problem_id
        for step in self.steps:
            data = step.data
            if step.kind == "accept":
                data = data.replace(_LEDGER_NO, f'"{self.ledger_no}"')
            elif step.kind == "merge":
                data = data.replace(_ORIGINAL_NO, self._original_no(step.at))
            step.event_id = _uuid4(self.joint_rng if step.kind in JOINT_KINDS else rng)
            events.append((
                step.event_id, problem_id, step.kind, step.actor, iso(step.at), step.from_status,
                step.to_status, step.note, data,
            ))

    def _original_no(self, at: int) -> str:
        original = self.merge_original
        accepted = original.fields["accepted_at"]
        return "null" if accepted is None or accepted > at else f'"{original.ledger_no}"'

    def merged_in_event(self) -> tuple:
        """The event the workflow adds to the original when a duplicate is merged into it."""
        merge = self.steps[-1]
        status = None
        for step in self.merge_original.steps:
            if step.at > merge.at:
                break
            status = step.to_status or status
        return (
            _uuid4(self.rng), self.merge_original.problem_id, "merged_in", merge.actor,
            self.ledger.clock.iso(merge.at), status, None, merge.note,
            f'{{"duplicate_id": "{self.problem_id}"}}',
        )


_TIMESTAMP_COLUMNS = frozenset({
    "accepted_at", "dispatched_at", "signed_at", "replied_at", "closed_at", "unit_dispatched_at",
})


def _problems_per_visit(rng: random.Random) -> int:
    return rng.choice((0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 6))


def _cumulative(weights) -> list[float]:
    total, cumulative = 0.0, []
    for weight in weights:
        total += weight
        cumulative.append(total)
    return cumulative


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    """Index drawn with the given cumulative weights (a fast ``rng.choices``)."""
    return min(bisect.bisect(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


# --- Entry points ---------------------------------------------------------------


def _reference_now() -> dt.datetime:
    """Today's midnight in Asia/Shanghai, so that seeding twice in one day gives the same data."""
    local_day = (int(dt.datetime.now(dt.UTC).timestamp()) + _LOCAL_OFFSET) // DAY
    return dt.datetime.fromtimestamp(local_day * DAY - _LOCAL_OFFSET, dt.UTC)


def seed_demo(
    db: sqlite_utils.Database,
    *,
    seed: int = 1,
    problems: int = 600,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[DemoAccount]:
    """Fill an empty, migrated database with the demo city; return the demo accounts.

    All ten statuses appear once ``problems`` is at least 20. Raises
    ``DemoDataExists`` if the database already has areas.
    """
    if now is None:
        now = _reference_now()
    if now.tzinfo is None:
        raise ValueError("naive datetime: a timezone is required")
    now_ts = int(now.timestamp())
    rng = random.Random(seed)
    with db.bulk_load():  # one write transaction
        if db.execute("SELECT count(*) FROM areas").fetchone()[0]:
            raise DemoDataExists("the database already holds areas")
        world = _build_world(db, rng, _Clock().iso(now_ts))
        if progress:
            progress(
                f"{len(world.areas)} areas, {len(world.units)} units,"
                f" {len(world.categories)} categories, {len(world.accounts)} users"
            )
        counts = _Ledger(db, rng, world, now_ts, problems, progress).run()
    if progress:
        progress(", ".join(f"{count:,} {table}" for table, count in counts.items()))
    return world.accounts


def demo_accounts(db: sqlite_utils.Database) -> list[DemoAccount]:
    """The demo accounts of an already seeded database (those still using the demo password)."""
    first = db.execute("SELECT password_hash FROM users ORDER BY id LIMIT 1").fetchone()
    if first is None or not auth.verify_password(first[0], DEMO_PASSWORD):
        return []
    rows = db.execute(
        "SELECT u.username, u.roles, u.display_name, a.name, un.name FROM users u"
        " JOIN areas a ON a.id = u.area_id LEFT JOIN units un ON un.id = u.unit_id"
        " WHERE u.password_hash = ? ORDER BY u.id",
        [first[0]],
    ).fetchall()
    return [
        DemoAccount(username, DEMO_PASSWORD, roles.split(",")[0], display_name, unit or area)
        for username, roles, display_name, area, unit in rows
    ]
